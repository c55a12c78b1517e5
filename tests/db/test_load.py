"""``signdb.loading.load_dataset`` against real PostgreSQL: formats, identity, batches, strictness."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from signdb.data.preprocess import Preprocessing
from signdb.errors import InputError, InvalidArgument
from signdb.loading import load_dataset
from tests.cli.test_cli_load import a_jpeg, copy_subset, dataset_rows

LABELS = {str(d): d for d in range(10)}
PREP = Preprocessing()


def stored(pg, name: str) -> list[tuple[str, int, bytes]]:
    """(sha256 of the stored pixel bytes, label, pixels) per image, by sha256."""
    return pg.execute(
        "SELECT encode(sha256(i.pixels), 'hex'), i.label, i.pixels FROM signdb.images i "
        "JOIN signdb.datasets d ON d.id = i.dataset_id WHERE d.name = %s ORDER BY 1",
        [name],
    ).fetchall()


def zip_folder(folder: Path, dest: Path, wrapper: str) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{wrapper}/{f.relative_to(folder).as_posix()}")
    return dest


@pytest.fixture
def loaded_jpegs(engine, pg, shared_dataset, tmp_path) -> list[tuple[str, int, bytes]]:
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=3)
    result = load_dataset(engine, tree, "jpeg", PREP, workers=1)
    assert (result.added, result.images) == (30, 30)
    rows = stored(pg, "jpeg")
    # The identity column is the sha256 of exactly the bytes stored.
    shas = {r[0] for r in pg.execute("SELECT sha256 FROM signdb.images")}
    assert shas == {sha for sha, _, _ in rows}
    return rows


def test_npy_pair_round_trips_byte_identical(engine, pg, loaded_jpegs, tmp_path):
    labels = np.array([label for _, label, _ in loaded_jpegs])
    x = np.stack([np.frombuffer(p, np.uint8).reshape(64, 64) for _, _, p in loaded_jpegs])
    pair = tmp_path / "uint8"
    pair.mkdir()
    np.save(pair / "X.npy", x)
    np.save(pair / "Y.npy", np.eye(10, dtype=np.uint8)[labels])  # one-hot rows
    result = load_dataset(engine, pair, "npy", PREP)
    assert (result.added, result.rejected) == (30, 0)
    assert stored(pg, "npy") == loaded_jpegs

    # The same images as floats in [0, 1] and (n, h, w, 1) are the same identities.
    floats = tmp_path / "float"
    floats.mkdir()
    np.save(floats / "X.npy", (x / 255.0).astype(np.float32)[..., None])
    np.save(floats / "Y.npy", labels)
    again = load_dataset(engine, floats / "X.npy", "npy", PREP)
    assert (again.added, again.skipped_duplicates) == (0, 30)
    # And loading them from another format into the JPEG dataset adds nothing.
    assert load_dataset(engine, pair, "jpeg", PREP).added == 0


def test_zip_inputs_round_trip_byte_identical(engine, pg, loaded_jpegs, tmp_path):
    tree = tmp_path / "tree"  # written by loaded_jpegs
    folder_zip = zip_folder(tree, tmp_path / "tree.zip", wrapper="Dataset")
    result = load_dataset(engine, folder_zip, "zip", PREP)
    assert (result.added, result.images) == (30, 30)
    assert stored(pg, "zip") == loaded_jpegs
    assert result.rejections == []

    pair = tmp_path / "pair"
    pair.mkdir()
    x = np.stack([np.frombuffer(p, np.uint8).reshape(64, 64) for _, _, p in loaded_jpegs])
    np.save(pair / "X.npy", x)
    np.save(pair / "Y.npy", np.array([label for _, label, _ in loaded_jpegs]))
    npy_zip = zip_folder(pair, tmp_path / "pair.zip", wrapper="arrays")
    assert load_dataset(engine, npy_zip, "jpeg", PREP).skipped_duplicates == 30
    assert load_dataset(engine, npy_zip, "npy-zip", PREP).added == 30
    assert stored(pg, "npy-zip") == loaded_jpegs


def test_rgb_stores_three_channels(engine, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    load_dataset(engine, tree, "rgb", Preprocessing(size=16, color="rgb"), workers=1)
    shapes = pg.execute(
        "SELECT DISTINCT height, width, channels, octet_length(pixels) FROM signdb.images"
    ).fetchall()
    assert shapes == [(16, 16, 3, 768)]


def _ctrl_c_after(inputs: int):
    """A progress callback that interrupts the load, as Ctrl-C would, after ``inputs`` inputs."""
    seen = 0

    def progress(_: int) -> None:
        nonlocal seen
        seen += 1
        if seen > inputs:
            raise KeyboardInterrupt

    return progress


def test_every_batch_commits_and_a_rerun_adds_the_rest(engine, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=5)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(engine, tree, "d", PREP, batch_size=16, progress=_ctrl_c_after(40), workers=1)
    assert dataset_rows(pg, "d") == (32, 1)  # two whole batches, nothing partial

    result = load_dataset(engine, tree, "d", PREP, batch_size=16)
    assert (result.added, result.skipped_duplicates, result.images) == (18, 32, 50)


def test_a_batch_also_ends_at_its_byte_budget(engine, pg, shared_dataset, tmp_path, monkeypatch):
    # Large images make smaller transactions: here 8 images' pixels fill a batch of 16.
    from signdb.loading import service

    monkeypatch.setattr(service, "BATCH_BYTES", 8 * PREP.size * PREP.size)
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=2)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(engine, tree, "d", PREP, batch_size=16, progress=_ctrl_c_after(12), workers=1)
    assert dataset_rows(pg, "d") == (8, 1)  # by count alone, nothing would be committed yet


def test_strict_rolls_back_every_batch(engine, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=2)
    (tree / "9" / "zz-empty.jpg").write_bytes(b"")  # sorted last: after 2 batches of 8
    with pytest.raises(InputError, match=r"zz-empty\.jpg: file is empty .*--strict"):
        load_dataset(engine, tree, "d", PREP, strict=True, batch_size=8, workers=1)
    assert dataset_rows(pg, "d") == (0, 0)

    ok = load_dataset(engine, tree, "d", PREP, batch_size=8, workers=1)
    assert (ok.added, ok.rejected) == (20, 1)


def test_identical_images_in_one_batch_are_stored_once_first_wins(
    engine, pg, shared_dataset, tmp_path
):
    jpeg = a_jpeg(shared_dataset)
    for label, name in [("3", "a.jpg"), ("3", "b.JPG"), ("5", "c.jpeg")]:
        (tmp_path / "tree" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / label / name).write_bytes(jpeg)
    result = load_dataset(engine, tmp_path / "tree", "d", PREP, workers=1)
    assert (result.added, result.skipped_duplicates, result.images) == (1, 2, 1)
    source, label = pg.execute("SELECT source, label FROM signdb.images").fetchone()
    assert (Path(source).name, label) == ("a.jpg", 3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad\x00name", "contains a NUL byte"),
        ("", "is empty"),
        (" ", "is empty"),
        ("n" * 201, "at most 200 characters"),
    ],
)
def test_unstorable_names_raise_before_any_work(engine, pg, tmp_path, name, message):
    # The path does not exist: the name must be refused before it is looked at.
    with pytest.raises(InvalidArgument, match=message):
        load_dataset(engine, tmp_path / "missing", name, PREP)
    assert pg.execute("SELECT count(*) FROM signdb.datasets").fetchone()[0] == 0


def test_a_name_of_exactly_200_characters_is_stored(engine, pg, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    name = "é" * 200
    assert load_dataset(engine, tree, name, PREP, workers=1).images == 10
    assert pg.execute("SELECT name FROM signdb.datasets").fetchone()[0] == name


def test_preprocessing_mismatch_fails_before_decoding(engine, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    load_dataset(engine, tree, "d", PREP, workers=1)
    shutil.rmtree(tree)  # a decode would now fail differently
    with pytest.raises(InputError, match="was loaded with --size 64 --color gray"):
        load_dataset(engine, tree, "d", Preprocessing(size=64, color="gray", resample="box"))


def test_a_race_on_the_same_images_falls_back_to_on_conflict(engine, pg, shared_dataset, tmp_path):
    """A concurrent load commits our images between our existence check and our COPY."""
    import threading

    from signdb.data import iter_samples
    from signdb.db.engine import transaction
    from signdb.store import datasets as ds_store
    from signdb.store import images as image_store

    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=1)
    samples = list(iter_samples(tree, PREP, workers=1))
    with transaction(engine) as session:
        dataset = ds_store.get_or_create_dataset(session, "d", PREP)
    outcome: dict[str, object] = {}

    def second_loader() -> None:
        try:
            with transaction(engine) as session:
                outcome["added"] = image_store.insert_samples(session, dataset, samples, LABELS)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = e

    with transaction(engine) as first:
        assert image_store.insert_samples(first, dataset, samples[:4], LABELS) == 4
        thread = threading.Thread(target=second_loader)
        thread.start()
        # Commit only once the second loader is blocked on our uncommitted rows:
        # its existence check has then already run and missed them.
        for _ in range(500):
            waiting = pg.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                break
            thread.join(0.01)
        assert waiting, "the second loader never waited on the first"
    thread.join(30)
    assert outcome == {"added": 6}
    assert dataset_rows(pg, "d") == (10, 1)
