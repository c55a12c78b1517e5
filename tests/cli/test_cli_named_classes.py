"""An RGB photo dataset with named classes, end to end through the CLI: load, train, evaluate."""

from __future__ import annotations

import json

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import named_tree, signdb

CLASSES = ["astronaut", "cat", "coffee", "rocket"]


@pytest.fixture
def photos(db_url, tmp_path):
    tree = named_tree(tmp_path / "photos", CLASSES, 24)
    loaded = signdb(
        "load", str(tree), "--dataset", "photos", "--color", "rgb", "--size", "32", "--json"
    )
    assert loaded.returncode == 0, loaded.stderr
    return tree, json.loads(loaded.stdout)


def _json(*args: str) -> dict:
    result = signdb(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_named_rgb_dataset_end_to_end(photos, db_url, tmp_path):
    tree, loaded = photos
    assert loaded["classes"] == CLASSES and loaded["added"] == 96

    shown = _json("datasets", "show", "photos", "--val-fraction", "0.2")
    assert [(c["label"], c["name"]) for c in shown["classes"]] == list(enumerate(CLASSES))
    assert all(c["train"] + c["val"] + c["test"] == 24 for c in shown["classes"])
    human = signdb("datasets", "show", "photos").stdout
    assert "astronaut" in human and "rocket" in human

    trained = _json(
        "train", "--dataset", "photos", "--model", "softmax", "--classes", "all",
        "--val-fraction", "0.2", "--iterations", "30",
    )  # fmt: skip
    assert trained["status"] == "succeeded"
    assert trained["val_accuracy"] is not None and trained["test_accuracy"] >= 0.8
    run = str(trained["run_id"])
    for split in ("test", "val"):
        scored = _json("evaluate", run, "--split", split)
        assert scored["split"] == split and scored["predictions"] > 0

    info = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info) as conn:
        names = conn.execute(
            "SELECT DISTINCT actual_name FROM signdb.confusion WHERE run_id = %s", [int(run)]
        ).fetchall()
        val = conn.execute(
            "SELECT val_accuracy, best_val_accuracy, val_fraction FROM signdb.run_summary "
            "WHERE run_id = %s",
            [int(run)],
        ).fetchone()
    assert {n for (n,) in names} <= set(CLASSES) and len(names) >= 3
    assert val[0] is not None and val[1] is not None and val[2] == 0.2

    image = next((tree / "coffee").iterdir())
    [prediction] = _json("predict", "--run", run, str(image))["predictions"]
    assert prediction["class"] in CLASSES and set(prediction["probabilities"]) == {
        "0",
        "1",
        "2",
        "3",
    }

    shown_run = _json("runs", "show", run)
    assert shown_run["class_names"] == CLASSES
    listed = signdb("runs", "list").stdout
    assert "astronaut,cat,coffee,rocket" in listed


def test_cnn_trains_on_rgb_photos_and_classes_are_chosen_by_name(photos):
    trained = _json(
        "train", "--dataset", "photos", "--model", "cnn", "--classes", "cat,rocket",
        "--iterations", "8", "--batch-size", "8",
    )  # fmt: skip
    # A colour per class: easy for a CNN once batch norm has seen a few dozen batches.
    assert trained["status"] == "succeeded" and trained["test_accuracy"] >= 0.9
    shown = _json("runs", "show", str(trained["run_id"]))
    assert shown["class_names"] == ["cat", "rocket"] and shown["classes"] == [1, 3]


def test_unknown_class_name_is_one_line(photos):
    result = signdb("train", "--dataset", "photos", "--classes", "cat,unicorn")
    assert result.returncode == 1
    assert "class 'unicorn' is not in dataset 'photos'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
