"""`signdb evaluate` and the evaluation metrics of `signdb runs list/show`, end to end."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.db.test_evaluate import real_runs  # noqa: F401 - session fixture
from tests.helpers import signdb


def run_cli(real_runs, *args):  # noqa: F811
    return signdb(*args, env={"SIGNDB_DATABASE_URL": real_runs.url})


def test_evaluate_json_reads_the_half_threshold_row(real_runs):  # noqa: F811
    result = run_cli(real_runs, "evaluate", str(real_runs.binary), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"run_id", "rows", "accuracy", "precision", "recall", "f1"} <= set(out)
    assert out["run_id"] == real_runs.binary and out["rows"] == 101
    with psycopg.connect(real_runs.conninfo) as conn:
        row = conn.execute(
            "SELECT accuracy, precision, recall, f1 FROM signdb.evaluations "
            "WHERE run_id = %s AND split = 'test' AND threshold = 0.5",
            [real_runs.binary],
        ).fetchone()
    assert (out["accuracy"], out["precision"], out["recall"], out["f1"]) == row


def test_evaluate_table_prints_the_seed_table(real_runs):  # noqa: F811
    result = run_cli(
        real_runs, "evaluate", str(real_runs.binary), "--table", "--thresholds", "0:1:0.1"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == [
        "threshold", "TP", "FP", "TN", "FN", "accuracy", "precision", "recall", "F1"
    ]  # fmt: skip
    assert len(lines) == 1 + 11
    assert [line.split()[0] for line in lines[1:]][5] == "0.50"
    last = lines[-1].split()  # threshold 1.00: nothing predicted positive
    assert last[0] == "1.00" and last[1] == "0" and last[6] == "-"


def test_multiclass_macro_metrics(real_runs):  # noqa: F811
    result = run_cli(real_runs, "evaluate", str(real_runs.multi), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rows"] == 3
    with psycopg.connect(real_runs.conninfo) as conn:
        accuracy, f1 = conn.execute(
            "SELECT avg((label = predicted)::int), "
            "(SELECT avg(f1) FROM signdb.evaluations WHERE run_id = %(r)s AND split = 'test') "
            "FROM signdb.predictions WHERE run_id = %(r)s AND split = 'test'",
            {"r": real_runs.multi},
        ).fetchone()
    assert out["accuracy"] == pytest.approx(float(accuracy))
    assert out["f1"] == pytest.approx(f1)


def test_split_all_counts_every_image(real_runs):  # noqa: F811
    result = run_cli(real_runs, "evaluate", str(real_runs.binary), "--split", "all", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    with psycopg.connect(real_runs.conninfo) as conn:
        total = conn.execute(
            "SELECT count(*) FROM signdb.run_images WHERE run_id = %s", [real_runs.binary]
        ).fetchone()[0]
        sums = conn.execute(
            "SELECT DISTINCT tp + fp + tn + fn FROM signdb.evaluations "
            "WHERE run_id = %s AND split = 'all'",
            [real_runs.binary],
        ).fetchall()
    assert out["predictions"] == total and sums == [(total,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999999"], "no run with id 999999; `signdb runs list` shows the runs"),
        (["{failed}"], "has no final weights"),
        (["{binary}", "--thresholds", "0:2:0.1"], "--thresholds needs 0 <= START < STOP <= 1"),
        (["{binary}", "--thresholds", "0:1:0"], "--thresholds STEP must be > 0, got 0"),
        (["{binary}", "--thresholds", "x"], "--thresholds must be START:STOP:STEP"),
    ],
)
def test_user_errors_exit_1_with_one_line(real_runs, args, message):  # noqa: F811
    args = [a.format(failed=real_runs.failed, binary=real_runs.binary) for a in args]
    result = run_cli(real_runs, "evaluate", *args, "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_split_is_a_usage_error(real_runs):  # noqa: F811
    result = run_cli(real_runs, "evaluate", str(real_runs.binary), "--split", "validation")
    assert result.returncode == 2 and "validation" in result.stderr


def test_runs_list_and_show_carry_the_evaluation_metrics(real_runs):  # noqa: F811
    listed = run_cli(real_runs, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["run_id"]: r for r in json.loads(listed.stdout)["runs"]}
    with psycopg.connect(real_runs.conninfo) as conn:
        f1, precision, recall = conn.execute(
            "SELECT f1, precision, recall FROM signdb.evaluations "
            "WHERE run_id = %s AND split = 'test' AND threshold = 0.5",
            [real_runs.binary],
        ).fetchone()
    assert by_id[real_runs.binary]["test_f1"] == f1
    assert by_id[real_runs.multi]["test_f1"] is not None
    assert by_id[real_runs.failed]["test_f1"] is None  # never evaluated
    assert by_id[real_runs.failed]["status"] == "failed"
    shown = run_cli(real_runs, "runs", "show", str(real_runs.binary), "--json")
    assert shown.returncode == 0, shown.stderr
    one = json.loads(shown.stdout)
    assert (one["test_precision"], one["test_recall"], one["test_f1"]) == (precision, recall, f1)
    table = run_cli(real_runs, "runs", "list")
    assert f"{f1:.3f}" in table.stdout
