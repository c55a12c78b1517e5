"""`signdb predict` on real JPEGs and on files it cannot read."""

from __future__ import annotations

import json

import psycopg

from tests.db.test_evaluate import real_runs  # noqa: F401 - session fixture
from tests.helpers import signdb


def run_cli(real_runs, *args):  # noqa: F811
    return signdb(*args, env={"SIGNDB_DATABASE_URL": real_runs.url})


def test_predict_real_jpegs_matches_sql_scoring(real_runs):  # noqa: F811
    files = [sorted((real_runs.image_dir / label).iterdir())[0] for label in ("0", "1")]
    result = run_cli(
        real_runs, "predict", "--run", str(real_runs.binary), *map(str, files), "--json"
    )
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["path"] for p in predictions] == [str(f) for f in files]
    with psycopg.connect(real_runs.conninfo) as conn:
        for p, f in zip(predictions, files, strict=True):
            # The loader stored the same file: scoring its stored pixels in SQL must agree.
            in_sql = conn.execute(
                "SELECT signdb.predict_proba(%s, id) FROM signdb.images WHERE source = %s",
                [real_runs.binary, str(f)],
            ).fetchone()[0]
            assert abs(p["probability"] - in_sql) <= 1e-6
            assert p["label"] == (1 if p["probability"] >= 0.5 else 0)
            assert set(p["probabilities"]) == {"0", "1"}


def test_predict_multiclass_gives_the_predicted_labels_probability(real_runs):  # noqa: F811
    f = sorted((real_runs.image_dir / "2").iterdir())[0]
    result = run_cli(real_runs, "predict", "--run", str(real_runs.multi), str(f), "--json")
    assert result.returncode == 0, result.stderr
    (p,) = json.loads(result.stdout)["predictions"]
    assert p["probability"] == max(p["probabilities"].values())
    assert str(p["label"]) == max(p["probabilities"], key=p["probabilities"].get)


def test_unreadable_image_names_the_file(real_runs, tmp_path):  # noqa: F811
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    good = sorted((real_runs.image_dir / "0").iterdir())[0]
    result = run_cli(real_runs, "predict", "--run", str(real_runs.binary), str(good), str(bad))
    assert result.returncode == 1
    assert str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_image_and_unknown_run(real_runs, tmp_path):  # noqa: F811
    missing = tmp_path / "nope.png"
    result = run_cli(real_runs, "predict", "--run", str(real_runs.binary), str(missing))
    assert result.returncode == 1 and f"no such image file: {missing}" in result.stderr
    result = run_cli(real_runs, "predict", "--run", "999999", str(missing))
    assert result.returncode == 1 and "no run with id 999999" in result.stderr
    result = run_cli(real_runs, "predict", "--run", str(real_runs.binary))
    assert result.returncode == 2  # no IMAGE: a usage error
