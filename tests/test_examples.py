"""The scripts in examples/ run as a user would run them, and their runs land in the views."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import named_tree, signdb

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def photos(db_url, tmp_path):
    tree = named_tree(tmp_path / "photos", ["cat", "coffee", "rocket"], 20)
    assert signdb("load", str(tree), "--dataset", "photos", "--size", "16").returncode == 0
    return db_url


def _run_example(name: str, *args: str) -> int:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--dataset", "photos", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1])


def _views(url: str, run_id: int) -> tuple:
    info = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info) as conn:
        summary = conn.execute(
            "SELECT status, model, test_f1 FROM signdb.run_summary WHERE run_id = %s", [run_id]
        ).fetchone()
        curves = dict(
            conn.execute(
                "SELECT metric, count(*) FROM signdb.learning_curves WHERE run_id = %s "
                "GROUP BY metric",
                [run_id],
            ).fetchall()
        )
        rank = conn.execute(
            "SELECT rank FROM signdb.leaderboard WHERE run_id = %s", [run_id]
        ).fetchone()
    return summary, curves, rank


def test_sklearn_example(photos):
    run_id = _run_example("sklearn_model.py")
    (status, model, f1), curves, rank = _views(photos, run_id)
    assert (status, model) == ("succeeded", "sklearn:LogisticRegression")
    assert f1 is not None and f1 > 0.8  # a colour per class: easy
    assert curves == {"train_accuracy": 1, "val_accuracy": 1}
    assert rank is not None


def test_numpy_loop_example(photos):
    run_id = _run_example("numpy_loop.py", "--epochs", "5")
    (status, model, f1), curves, rank = _views(photos, run_id)
    assert (status, model) == ("succeeded", "numpy:softmax-loop")
    assert curves["val_accuracy"] == 5 and curves["loss"] >= 5
    assert f1 is not None and rank is not None


def test_torch_custom_model_example(photos, tmp_path):
    run_id = _run_example("torch_custom_model.py", "--epochs", "5", "--batch-size", "8")
    (status, model, f1), curves, rank = _views(photos, run_id)
    assert (status, model) == ("succeeded", "torch:small-cnn")
    assert curves["val_accuracy"] == 5 and curves["loss"] >= 5
    assert f1 > 0.5 and rank is not None  # it learns (0.77 here), and is on the leaderboard
    info = make_url(photos).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info) as conn:
        dtypes = dict(
            conn.execute(
                "SELECT tensor, dtype FROM signdb.weights WHERE run_id = %s AND final", [run_id]
            ).fetchall()
        )
    assert dtypes["features.1.num_batches_tracked"] == "int64"  # kept as it is
    assert dtypes["head.weight"] == "float32"
    report = signdb("report", str(run_id), "--out", str(tmp_path / "report"), "--json")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "index.html").is_file()
