"""Folder trees, npy pairs and zips into Samples and Rejections."""

from __future__ import annotations

import collections
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import signdb.data
from signdb.data import (
    Preprocessing,
    Rejection,
    Sample,
    count_inputs,
    iter_samples,
    load_image_file,
    safe_extract_zip,
)
from signdb.errors import ArrayError, InputError, InvalidArgument, NotFound, UnsafeArchive

PREP = Preprocessing()


def run(path, workers: int = 1, prep: Preprocessing = PREP):
    items = list(iter_samples(path, prep, workers=workers))
    samples = [i for i in items if isinstance(i, Sample)]
    rejections = [i for i in items if isinstance(i, Rejection)]
    return samples, rejections


def reasons(rejections: list[Rejection]) -> dict[str, str]:
    return {Path(r.source.rstrip("/")).name: r.reason for r in rejections}


def zip_dir(src: Path, dest: Path, wrapper: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, f"{wrapper}{f.relative_to(src).as_posix()}")
    return dest


# --- the reference dataset ----------------------------------------------------


def test_full_reference_dataset_with_two_workers(dataset_dir):
    counts: collections.Counter[int] = collections.Counter()
    rejections = []
    sources = []
    ticks = []
    for item in iter_samples(dataset_dir, PREP, workers=2, progress=ticks.append):
        if isinstance(item, Rejection):
            rejections.append(item)
            continue
        assert item.pixels.shape == (64, 64, 1) and item.pixels.dtype == np.uint8
        counts[int(item.class_key)] += 1
        sources.append(item.source)
    assert rejections == []
    assert [counts[i] for i in range(10)] == [205, 206, 206, 206, 207, 207, 207, 206, 208, 204]
    assert sum(ticks) == 2062 == count_inputs(dataset_dir)
    assert sources == sorted(sources)  # deterministic order
    assert any("IMG_5874" in s for s in sources)  # one of the 3024x3024 photos


# --- folder trees ---------------------------------------------------------------


def test_one_and_two_workers_give_identical_streams(make_subset, tmp_path):
    tree = make_subset(tmp_path / "tree", 8)  # > 1 chunk: uses the pool
    (tree / "notes.txt").write_text("stray")
    (tree / "4" / "empty.jpg").write_bytes(b"")
    one = list(iter_samples(tree, PREP, workers=1))
    two = list(iter_samples(tree, PREP, workers=2))
    assert len(one) == len(two) == 82
    for a, b in zip(one, two, strict=True):
        assert type(a) is type(b) and a.source == b.source
        if isinstance(a, Sample):
            assert a.class_key == b.class_key and a.sha256 == b.sha256
            assert np.array_equal(a.pixels, b.pixels)


def test_any_extension_case(dataset_dir, tmp_path):
    src = sorted((dataset_dir / "3").iterdir())[:5]
    (tmp_path / "3").mkdir()
    for f, name in zip(src, ["a.jpg", "b.JPG", "c.jpeg", "d.JPEG", "e.jpg"], strict=True):
        shutil.copy(f, tmp_path / "3" / name)
    Image.open(src[4]).save(tmp_path / "3" / "f.png")
    Image.open(src[4]).save(tmp_path / "3" / "g.PNG")
    (tmp_path / "3" / "e.jpg").unlink()
    samples, rejections = run(tmp_path)
    assert rejections == []
    assert [Path(s.source).name for s in samples] == [
        "a.jpg",
        "b.JPG",
        "c.jpeg",
        "d.JPEG",
        "f.png",
        "g.PNG",
    ]
    assert {s.class_key for s in samples} == {"3"}
    # PNG is lossless: the PNG copy of a JPEG decodes to the very same pixels.
    decoded = load_image_file(src[4], PREP)
    assert np.array_equal(samples[-1].pixels, decoded)


def test_bad_inputs_in_a_tree_become_rejections(small_tree):
    (small_tree / "seven").mkdir()  # a class named by a word: fine
    shutil.copy(next((small_tree / "7").iterdir()), small_tree / "seven" / "x.jpg")
    (small_tree / "README").mkdir()
    (small_tree / "README" / "about.txt").write_text("hi")
    (small_tree / "11").mkdir()  # empty label folder
    (small_tree / "top.jpg").write_bytes(b"")  # stray file at the top level
    (small_tree / "2" / "empty.jpg").write_bytes(b"")
    (small_tree / "2" / "text.png").write_text("not an image")
    (small_tree / "2" / "notes.txt").write_text("not an image either")
    (small_tree / "2" / ".DS_Store").write_bytes(b"\0")  # OS metadata: ignored
    samples, rejections = run(small_tree, workers=2)
    assert len(samples) == 31 and {s.class_key for s in samples} >= {"seven", "7"}
    r = reasons(rejections)
    assert set(r) == {"about.txt", "11", "top.jpg", "empty.jpg", "text.png", "notes.txt"}
    assert "not a JPEG or PNG" in r["about.txt"]
    assert "class folder is empty" in r["11"]
    assert "stray file at the top level" in r["top.jpg"]
    assert "empty (0 bytes)" in r["empty.jpg"]
    assert "not an image Pillow can read" in r["text.png"]
    assert "not a JPEG or PNG" in r["notes.txt"] and "'.txt'" in r["notes.txt"]
    assert count_inputs(small_tree) == len(samples) + len(rejections)


@pytest.mark.parametrize("name", ["07", "-1", "+3", "7.0", "٣", "seven"])
def test_any_folder_name_is_a_class_name(small_tree, name):
    shutil.move(small_tree / "7", small_tree / name)
    samples, rejections = run(small_tree)
    assert rejections == []
    assert sum(s.class_key == name for s in samples) == 3


def test_class_keys_are_the_folders_that_hold_images(small_tree):
    (small_tree / "notes").mkdir()
    (small_tree / "notes" / "a.txt").write_text("not an image")
    with signdb.data.open_input(small_tree) as src:
        assert src.class_keys() == {str(d) for d in range(10)}


def test_missing_path():
    with pytest.raises(
        NotFound, match=r"no such file or folder: /nope/data.*signdb datasets fetch"
    ):
        iter_samples("/nope/data", PREP)
    with pytest.raises(NotFound):
        count_inputs("/nope/data")
    with pytest.raises(NotFound, match="/nope/a.jpg"):
        load_image_file("/nope/a.jpg", PREP)


def test_folder_with_nothing_loadable(tmp_path):
    with pytest.raises(InputError, match="nothing to load.*one subfolder per class.*X.npy"):
        iter_samples(tmp_path, PREP)
    Image.new("L", (8, 8)).save(tmp_path / "flat.png")  # images without label folders
    with pytest.raises(InputError, match="nothing to load"):
        iter_samples(tmp_path, PREP)


def test_bad_workers(small_tree):
    with pytest.raises(InvalidArgument, match="workers must be a positive integer, got 0"):
        iter_samples(small_tree, PREP, workers=0)


def test_wrapper_folder_is_descended(small_tree, tmp_path):
    outer = tmp_path / "download"
    (outer / "Dataset").mkdir(parents=True)
    shutil.move(small_tree, outer / "Dataset" / "tree")
    samples, rejections = run(outer)
    assert len(samples) == 30 and rejections == []


# --- npy pairs ------------------------------------------------------------------


def write_pair(d: Path, x: np.ndarray, y: np.ndarray) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "X.npy", x)
    np.save(d / "Y.npy", y)
    return d


@pytest.fixture
def tree_samples(small_tree):
    samples, rejections = run(small_tree)
    assert rejections == []
    return samples


@pytest.mark.parametrize("form", ["uint8", "float", "channel", "onehot"])
def test_npy_round_trip_is_byte_identical(tree_samples, tmp_path, form):
    x = np.stack([s.pixels for s in tree_samples])  # (n, 64, 64, 1) uint8
    y = np.array([int(s.class_key) for s in tree_samples])
    if form == "uint8":
        x = x[..., 0]
    elif form == "float":
        x = x[..., 0].astype(np.float32) / 255
    elif form == "onehot":
        y = np.eye(10)[y]
    d = write_pair(tmp_path / "npy", x, y)
    for path in (d, d / "X.npy", d / "Y.npy"):
        samples, rejections = run(path)
        assert rejections == []
        assert [s.class_key for s in samples] == [s.class_key for s in tree_samples]
        assert [s.sha256 for s in samples] == [s.sha256 for s in tree_samples]
        assert all(
            np.array_equal(a.pixels, b.pixels) for a, b in zip(samples, tree_samples, strict=True)
        )
    assert samples[4].source == f"{d / 'X.npy'}[4]"
    assert count_inputs(d) == len(tree_samples)


def test_npy_resized_and_rgb(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (3, 100, 100, 3), dtype=np.uint8)
    d = write_pair(tmp_path, rgb, np.array([0, 1, 2]))
    samples, _ = run(d, prep=Preprocessing(size=32, color="rgb"))
    assert [s.pixels.shape for s in samples] == [(32, 32, 3)] * 3
    gray, _ = run(d, prep=Preprocessing(size=32))
    assert gray[0].pixels.shape == (32, 32, 1)


def test_bad_rows_become_rejections(tmp_path):
    x = np.full((6, 8, 8), 0.5, np.float32)
    x[1, 2, 3] = np.nan
    x[2, 0, 1] = 1.5
    x[3, 7, 7] = -0.1
    y = np.eye(4)[[0, 1, 2, 3, 1, 2]]
    y[4] = [0.5, 0.5, 0, 0]  # not one-hot
    y[5] = [0, 1, 1, 0]  # two ones
    d = write_pair(tmp_path, x, y)
    samples, rejections = run(d, prep=Preprocessing(size=8))
    assert [s.class_key for s in samples] == ["0"]
    r = {rej.source.rsplit("/", 1)[-1]: rej.reason for rej in rejections}
    assert set(r) == {"X.npy[1]", "X.npy[2]", "X.npy[3]", "X.npy[4]", "X.npy[5]"}
    assert "pixel (2, 3) is" in r["X.npy[1]"] and "nan" in r["X.npy[1]"]
    assert "1.5" in r["X.npy[2]"] and "[0, 1]" in r["X.npy[2]"]
    assert "-0.1" in r["X.npy[3]"]
    assert "not one-hot" in r["X.npy[4]"] and "0.5" in r["X.npy[4]"]
    assert "not one-hot" in r["X.npy[5]"]
    assert not any(reason.startswith("X.npy") for reason in r.values())  # source not repeated


def test_bad_class_indices(tmp_path):
    d = write_pair(tmp_path, np.zeros((3, 8, 8), np.uint8), np.array([1.0, -2.0, 2.5]))
    samples, rejections = run(d, prep=Preprocessing(size=8))
    assert [s.class_key for s in samples] == ["1"]
    assert "negative" in rejections[0].reason and "not a whole number" in rejections[1].reason


@pytest.mark.parametrize(
    "x, y, words",
    [
        (np.zeros((5, 8, 8)), np.zeros(4), ["(5, 8, 8)", "(4,)", "one label per image"]),
        (np.zeros((5, 64)), np.zeros(5), ["(5, 64)", "(n, h, w)"]),
        (np.zeros((5, 8, 8, 7)), np.zeros(5), ["(5, 8, 8, 7)", "c in 1..4"]),
        (np.zeros((5, 8, 8)), np.zeros((5, 2, 2)), ["(5, 2, 2)", "one-hot"]),
        (np.full((2, 8, 8), "a"), np.zeros(2), ["<U1", "uint8 or float"]),
        (np.zeros((0, 8, 8)), np.zeros(0), ["no images"]),
    ],
)
def test_unusable_arrays_raise(tmp_path, x, y, words):
    d = write_pair(tmp_path, x, y)
    with pytest.raises(ArrayError) as e:
        iter_samples(d, PREP)
    for w in words:
        assert w in str(e.value)


def test_object_arrays_are_not_unpickled(tmp_path):
    d = write_pair(tmp_path, np.zeros((2, 8, 8)), np.zeros(2))
    np.save(d / "X.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ArrayError, match="numeric"):
        iter_samples(d, PREP)


def test_half_a_pair(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="found X.npy but no Y.npy"):
        iter_samples(tmp_path, PREP)
    with pytest.raises(InputError, match="Y.npy"):
        iter_samples(tmp_path / "X.npy", PREP)


# --- zips -----------------------------------------------------------------------


def test_zip_of_tree_matches_the_folder(small_tree, tree_samples, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for wrapper in ("", "Dataset/"):
        z = zip_dir(small_tree, tmp_path / f"tree{len(wrapper)}.zip", wrapper)
        assert count_inputs(z) == 30
        samples, rejections = run(z, workers=2)
        assert rejections == []
        assert [s.sha256 for s in samples] == [s.sha256 for s in tree_samples]
        assert samples[0].source == f"{z}:{wrapper}0/{Path(tree_samples[0].source).name}"
    assert list(scratch.iterdir()) == []  # extracted files are cleaned up


def test_zip_of_npy_pair(tree_samples, tmp_path):
    x = np.stack([s.pixels for s in tree_samples])
    d = write_pair(tmp_path / "pair", x, np.array([int(s.class_key) for s in tree_samples]))
    z = zip_dir(d, tmp_path / "pair.zip", "data/")
    assert count_inputs(z) == len(tree_samples)
    samples, rejections = run(z)
    assert rejections == [] and [s.sha256 for s in samples] == [s.sha256 for s in tree_samples]


def test_abandoned_zip_iteration_cleans_up(small_tree, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    it = iter_samples(zip_dir(small_tree, tmp_path / "t.zip"), PREP, workers=2)
    next(it)
    it.close()
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "member", ["../evil.jpg", "/etc/evil.jpg", "0/../../evil.jpg", "C:/evil.jpg"]
)
def test_zip_slip_is_refused(tmp_path, member):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("0/fine.jpg", b"x")
        zf.writestr(member, b"x")
    dest = tmp_path / "out" / "inner"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchive, match="zip-slip"):
        safe_extract_zip(z, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "out" / "evil.jpg").exists()
    with pytest.raises(UnsafeArchive, match=member.replace(".", r"\.")):
        iter_samples(z, PREP)
    with pytest.raises(UnsafeArchive):
        count_inputs(z)


def test_not_a_zip(tmp_path):
    z = tmp_path / "broken.zip"
    z.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match="not a readable zip"):
        iter_samples(z, PREP)


def test_public_api_is_exactly_all():
    exported = {n for n in dir(signdb.data) if not n.startswith("_")}
    modules = {"decoding", "fetch", "formats", "labels", "preprocess", "samples", "splits"}
    assert exported - modules == set(signdb.data.__all__)
    for name in signdb.data.__all__:
        assert getattr(signdb.data, name) is not None
