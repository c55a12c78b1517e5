"""Named classes, fixed splits and the validation split, against a real PostgreSQL."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from signdb.data.preprocess import Preprocessing
from signdb.data.splits import split_of
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, LabelError
from signdb.loading import load_dataset
from signdb.store import datasets as ds_store
from signdb.tracking import start_run
from tests.helpers import named_tree

RGB = Preprocessing(size=32, color="rgb")


def _classes(pg: psycopg.Connection, dataset: str) -> dict[str, int]:
    return dict(
        pg.execute(
            "SELECT c.name, c.label FROM signdb.classes c JOIN signdb.datasets d "
            "ON d.id = c.dataset_id WHERE d.name = %s",
            [dataset],
        ).fetchall()
    )


def _run_splits(pg: psycopg.Connection, run_id: int) -> dict[str, str]:
    return dict(
        pg.execute(
            "SELECT i.sha256, ri.split FROM signdb.run_images ri JOIN signdb.images i "
            "ON i.id = ri.image_id WHERE ri.run_id = %s",
            [run_id],
        ).fetchall()
    )


def test_named_classes_get_sorted_labels_and_later_names_append(engine, pg, tmp_path):
    tree = named_tree(tmp_path / "a", ["rocket", "cat", "coffee"], 4)
    result = load_dataset(engine, tree, "photos", RGB, workers=1)
    assert result.classes == ["cat", "coffee", "rocket"]
    assert _classes(pg, "photos") == {"cat": 0, "coffee": 1, "rocket": 2}
    # Each image's label is its folder's class.
    rows = pg.execute(
        "SELECT c.name, i.source FROM signdb.images i JOIN signdb.classes c "
        "ON c.dataset_id = i.dataset_id AND c.label = i.label"
    ).fetchall()
    assert rows and all(f"/{name}/" in source for name, source in rows)
    more = named_tree(tmp_path / "b", ["astronaut", "cat"], 2, seed=100)
    again = load_dataset(engine, more, "photos", RGB, workers=1)
    assert _classes(pg, "photos") == {"cat": 0, "coffee": 1, "rocket": 2, "astronaut": 3}
    assert again.classes == ["cat", "coffee", "rocket", "astronaut"]


def test_a_case_clash_or_a_rename_writes_nothing(engine, pg, tmp_path):
    load_dataset(engine, named_tree(tmp_path / "a", ["cat"], 2), "p", RGB, workers=1)
    clash = named_tree(tmp_path / "b", ["grass"], 2)
    (clash / "grass").rename(clash / "Cat")
    before = pg.execute("SELECT count(*) FROM signdb.images").fetchone()[0]
    with pytest.raises(LabelError, match="'cat' and 'Cat' .* differ only in case"):
        load_dataset(engine, clash, "p", RGB, workers=1)
    assert pg.execute("SELECT count(*) FROM signdb.images").fetchone()[0] == before
    assert _classes(pg, "p") == {"cat": 0}


def test_npy_labels_are_named_and_a_reload_may_not_rename_them(engine, pg, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.integers(0, 256, (6, 8, 8), dtype=np.uint8))
    np.save(tmp_path / "Y.npy", np.array([0, 1, 2, 0, 1, 2]))
    prep = Preprocessing(size=8)
    load_dataset(engine, tmp_path, "arr", prep, class_names=["zero", "one", "two"])
    assert _classes(pg, "arr") == {"zero": 0, "one": 1, "two": 2}
    with pytest.raises(LabelError, match="rename class 0 from 'zero' to '0'"):
        load_dataset(engine, tmp_path, "arr", prep)
    with pytest.raises(LabelError, match="cover labels 0 to 1"):
        load_dataset(engine, tmp_path, "arr2", prep, class_names=["zero", "one"])
    assert pg.execute("SELECT count(*) FROM signdb.datasets WHERE name = 'arr2'").fetchone() == (0,)


def test_a_pre_split_tree_keeps_its_split(engine, pg, tmp_path):
    tree = named_tree(tmp_path / "t", ["brick", "grass"], 3, splits=["train", "test"])
    named_tree(tmp_path / "t", ["gravel"], 2, seed=50, splits=["test"])  # not in train/
    result = load_dataset(engine, tree, "tex", RGB, workers=1)
    assert any("gravel are not in train/" in w for w in result.warnings)
    splits = dict(pg.execute("SELECT split, count(*) FROM signdb.images GROUP BY split").fetchall())
    assert splits == {"train": 6, "test": 8}
    run = start_run(engine, dataset="tex", model="m", classes=["brick", "grass"])
    assert run.record.split == "fixed"
    stored = dict(pg.execute("SELECT sha256, split FROM signdb.images").fetchall())
    assert all(stored[sha] == split for sha, split in _run_splits(pg, run.id).items())
    with run:
        pass


def test_val_is_carved_out_of_a_fixed_train_split(engine, pg, tmp_path):
    tree = named_tree(tmp_path / "t", ["brick", "grass"], 12, splits=["train", "test"])
    load_dataset(engine, tree, "tex", RGB, workers=1)
    run = start_run(engine, dataset="tex", model="m", classes=None, val_fraction=0.4, seed=3)
    got = _run_splits(pg, run.id)
    fixed = dict(pg.execute("SELECT sha256, split FROM signdb.images").fetchall())
    assert {s for sha, s in got.items() if fixed[sha] == "test"} == {"test"}
    carved = {sha for sha, s in got.items() if s == "val"}
    assert carved and all(fixed[sha] == "train" for sha in carved)
    with run:
        pass
    hashed = start_run(engine, dataset="tex", model="m", classes=None, split="hash")
    assert hashed.record.split == "hash"
    with hashed:
        pass


def test_adding_a_val_split_never_moves_a_test_image(engine, pg, shared_dataset, tmp_path):
    load_dataset(engine, shared_dataset, "digits", Preprocessing(), workers=2)
    plain = start_run(engine, dataset="digits", model="m", classes=None, seed=5)
    with_val = start_run(
        engine, dataset="digits", model="m", classes=None, seed=5, val_fraction=0.2
    )
    a, b = _run_splits(pg, plain.id), _run_splits(pg, with_val.id)
    assert {s for s, x in a.items() if x == "test"} == {s for s, x in b.items() if x == "test"}
    assert {x for x in b.values()} == {"train", "val", "test"}
    # Only train images moved to val, and the SQL rule is the Python one.
    assert all(a[sha] == "train" for sha, x in b.items() if x == "val")
    assert all(x == split_of(sha, 5, 0.15, 0.2) for sha, x in list(b.items())[:300])
    mismatched = pg.execute(
        "SELECT count(*) FROM signdb.run_images ri JOIN signdb.images i ON i.id = ri.image_id "
        "JOIN signdb.runs r ON r.id = ri.run_id WHERE ri.run_id = %s "
        "AND ri.split <> signdb.split_of(i.sha256, r.seed, r.test_fraction, r.val_fraction)",
        [with_val.id],
    ).fetchone()[0]
    assert mismatched == 0
    sizes = pg.execute(
        "SELECT train_size, val_size, test_size, val_fraction FROM signdb.runs WHERE id = %s",
        [with_val.id],
    ).fetchone()
    assert sum(sizes[:3]) == 2062 and sizes[3] == 0.2
    for run in (plain, with_val):
        with run:
            pass


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(classes=["cat", "unicorn"]), "class 'unicorn' is not in dataset 'p'"),
        (dict(classes=["cat"]), "at least two distinct classes"),
        (dict(test_fraction=0.5, val_fraction=0.5), "leaves no images to train on"),
        (dict(val_fraction=-0.1), "val fraction must be at least 0"),
        (dict(split="fixed"), "carry no fixed split"),
        (dict(split="sometimes"), "--split must be auto, fixed or hash"),
        (dict(val_fraction=0.01, seed=1), "the val split of 'p'"),
    ],
)
def test_bad_run_requests_create_no_run(engine, pg, tmp_path, kw, message):
    load_dataset(engine, named_tree(tmp_path / "a", ["cat", "coffee"], 3), "p", RGB, workers=1)
    with pytest.raises(InvalidArgument, match=message):
        start_run(engine, dataset="p", model="m", **kw)
    assert pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == 0


def test_classes_by_name_or_label(engine, pg, tmp_path):
    load_dataset(engine, named_tree(tmp_path / "a", ["cat", "coffee", "rocket"], 3), "p", RGB)
    by_name = start_run(engine, dataset="p", model="m", classes=["rocket", "cat"])
    by_label = start_run(engine, dataset="p", model="m", classes=[0, 2])
    assert by_name.classes == by_label.classes == [0, 2]
    for run in (by_name, by_label):
        with run:
            pass
    with transaction(engine) as session:
        summary = ds_store.summarize(session, "p", mode="auto").as_dict()
    assert [(c["label"], c["name"], c["images"]) for c in summary["classes"]] == [
        (0, "cat", 3),
        (1, "coffee", 3),
        (2, "rocket", 3),
    ]
