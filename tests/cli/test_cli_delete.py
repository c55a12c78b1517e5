"""`signdb runs delete` and `signdb datasets delete` through the real entry point: what goes,
what stays, what is refused (and then nothing is deleted), the question on a terminal."""

from __future__ import annotations

import json

import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb.store.deletion import RUN_TABLES
from tests.helpers import login_role, named_tree, signdb, signdb_on_terminal


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _rows(url: str, run_id: int) -> dict[str, int]:
    with psycopg.connect(_conninfo(url)) as conn:
        counts = {
            table: conn.execute(
                f"SELECT count(*) FROM signdb.{table} WHERE run_id = %s",  # noqa: S608 - constant names
                [run_id],
            ).fetchone()[0]
            for table in RUN_TABLES
        }
        counts["runs"] = conn.execute(
            "SELECT count(*) FROM signdb.runs WHERE id = %s", [run_id]
        ).fetchone()[0]
    return counts


def _train(dataset: str, *extra: str) -> int:
    done = signdb("train", "--dataset", dataset, "--model", "softmax", "--classes", "all",
                  "--iterations", "3", "--json", *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


@pytest.fixture
def two_runs(db_url, tmp_path):
    """Dataset ``photos`` with two runs, the first evaluated (predictions, scores, curves).

    Made in-process (the commands under test run as real processes)."""
    import signdb as api

    db = api.connect(db_url)
    db.load(named_tree(tmp_path / "photos", ["cat", "rocket"], 12), "photos", size=16)
    first, second = (
        db.train("photos", "softmax", classes="all", iterations=3).run_id for _ in range(2)
    )
    db.evaluate(first)
    db.engine.dispose()
    return db_url, first, second


def test_runs_delete_removes_every_row_of_the_run_and_nothing_else(two_runs):
    url, first, second = two_runs
    before, kept = _rows(url, first), _rows(url, second)
    for table in ("run_metrics", "weights", "predictions", "evaluations", "score_values",
                  "curves", "calibration_bins", "run_images"):  # fmt: skip
        assert before[table] > 0, table
    done = signdb("runs", "delete", str(first), "--yes", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["runs"] == [first] and out["deleted"] is True
    assert out["rows"] == before  # what it reports is what was there
    assert set(_rows(url, first).values()) == {0}
    assert _rows(url, second) == kept


def test_dry_run_and_a_missing_id_delete_nothing(two_runs):
    url, first, second = two_runs
    before = _rows(url, first)
    dry = signdb("runs", "delete", str(first), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would delete 1 runs")
    missing = signdb("runs", "delete", str(first), "999999", "--yes")
    assert missing.returncode == 1
    assert "no run with id 999999" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert _rows(url, first) == before


def test_without_a_terminal_it_needs_yes(two_runs):
    url, first, _ = two_runs
    done = signdb("runs", "delete", str(first))
    assert done.returncode == 1 and "pass --yes" in done.stderr
    assert _rows(url, first)["runs"] == 1


@pytest.mark.parametrize(("answer", "deleted"), [("n", False), ("y", True)])
def test_on_a_terminal_it_asks_first(two_runs, answer, deleted):
    url, first, _ = two_runs
    status, out = signdb_on_terminal("runs", "delete", str(first), answer=answer)
    assert f"run {first}: softmax on 'photos', succeeded" in out
    assert "Delete 1 runs, " in out and "[y/N]" in out
    assert status == (0 if deleted else 1), out
    assert _rows(url, first)["runs"] == (0 if deleted else 1)


def test_a_running_run_is_refused_a_dead_one_is_not(two_runs):
    url, first, second = two_runs
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("UPDATE signdb.runs SET status = 'running', heartbeat_at = now() "
                     "WHERE id = %s", [first])  # fmt: skip
        conn.execute("UPDATE signdb.runs SET status = 'running', "
                     "heartbeat_at = now() - interval '1 hour' WHERE id = %s", [second])  # fmt: skip
    both = signdb("runs", "delete", str(first), str(second), "--yes")
    assert both.returncode == 1
    assert f"run {first} is running; cancel it first" in both.stderr
    assert str(second) not in both.stderr.split("is running")[0].replace(str(first), "")
    assert _rows(url, first)["runs"] == 1 and _rows(url, second)["runs"] == 1  # all or nothing
    stale = signdb("runs", "delete", str(second), "--yes")  # its trainer died: reads interrupted
    assert stale.returncode == 0, stale.stderr
    assert _rows(url, second)["runs"] == 0


def test_a_sweeps_run_needs_force(two_runs):
    url, first, _ = two_runs
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO signdb.sweeps (name, dataset_id, model, classes, space, fixed, sampler, "
            "objective, trials, repeats, seed, test_fraction, val_fraction, split, pruner, "
            "heartbeat_seconds, grace_seconds) SELECT 'sw', dataset_id, 'softmax', classes, "
            "'{}', '{}', 'tpe', 'val_accuracy', 1, 1, 42, 0.15, 0.15, 'hash', '{}', 30, 180 "
            "FROM signdb.runs WHERE id = %s",
            [first],
        )
        conn.execute("UPDATE signdb.runs SET sweep = 'sw', trial_number = 0 WHERE id = %s", [first])
    refused = signdb("runs", "delete", str(first), "--yes")
    assert refused.returncode == 1
    assert f"run {first} is trial 0 of sweep 'sw'" in refused.stderr and "--force" in refused.stderr
    assert _rows(url, first)["runs"] == 1
    assert signdb("runs", "delete", str(first), "--yes", "--force").returncode == 0
    assert _rows(url, first)["runs"] == 0


def test_a_run_a_model_alias_serves_is_refused_naming_the_alias(two_runs):
    url, first, _ = two_runs
    assert signdb("models", "alias", "prod", str(first)).returncode == 0
    done = signdb("runs", "delete", str(first), "--yes")
    assert done.returncode == 1
    assert f"run {first} is served as model 'prod'" in done.stderr
    assert "signdb models alias prod OTHER_RUN_ID" in done.stderr
    assert _rows(url, first)["runs"] == 1


def test_a_run_another_table_points_at_is_refused_by_name(two_runs):
    """A table of the user's own that refers to runs: its foreign key refuses, named."""
    url, first, _ = two_runs
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE signdb.notes (run_id bigint NOT NULL "
                     "REFERENCES signdb.runs (id), note text)")  # fmt: skip
        conn.execute("INSERT INTO signdb.notes VALUES (%s, 'keep')", [first])
    done = signdb("runs", "delete", str(first), "--yes")
    assert done.returncode == 1
    assert f"run {first} cannot be deleted: notes still refers to it" in done.stderr
    assert _rows(url, first)["runs"] == 1


def test_a_queued_run_is_refused_until_cancelled(two_runs):
    url, _, _ = two_runs
    submitted = signdb("submit", "--dataset", "photos", "--classes", "all", "--json")
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    done = signdb("runs", "delete", str(run_id), "--yes")
    assert done.returncode == 1 and f"signdb runs cancel {run_id}" in done.stderr
    assert signdb("runs", "cancel", str(run_id)).returncode == 0
    assert signdb("runs", "delete", str(run_id), "--yes").returncode == 0


def test_the_analyst_role_can_delete_nothing(two_runs, pg_admin_url, tmp_path):
    url, first, _ = two_runs
    with login_role(pg_admin_url, "signdb_analyst") as analyst:
        as_analyst = make_url(url).set(username=analyst).render_as_string(hide_password=False)
        for args in (["runs", "delete", str(first)], ["datasets", "delete", "photos",
                                                       "--with-runs"]):  # fmt: skip
            done = signdb(*args, "--yes", "--database-url", as_analyst)
            assert done.returncode == 1, done.stdout
            assert "permission denied" in done.stderr and "signdb_analyst only reads" in done.stderr
    assert _rows(url, first)["runs"] == 1


def test_datasets_delete_refuses_while_runs_use_it_then_takes_them(two_runs, tmp_path):
    url, first, second = two_runs
    other = named_tree(tmp_path / "other", ["coffee", "grass"], 6)
    assert signdb("load", str(other), "--dataset", "other", "--size", "16").returncode == 0
    kept_run = _train("other")
    refused = signdb("datasets", "delete", "photos", "--yes")
    assert refused.returncode == 1
    assert f"dataset 'photos' is used by 2 runs ({first}, {second})" in refused.stderr
    assert "--with-runs" in refused.stderr
    done = signdb("datasets", "delete", "photos", "--with-runs", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["dataset"], out["images"], out["classes"]) == ("photos", 24, 2)
    assert out["runs"] == [first, second] and out["rows"]["predictions"] > 0
    with psycopg.connect(_conninfo(url)) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM signdb.datasets WHERE name = 'photos'), "
            "(SELECT count(*) FROM signdb.images), (SELECT count(*) FROM signdb.classes), "
            "(SELECT count(*) FROM signdb.run_metrics WHERE run_id IN (%s, %s))",
            [first, second],
        ).fetchone()
    assert left == (0, 12, 2, 0)  # the other dataset's 12 images and 2 classes stay
    assert _rows(url, kept_run)["runs"] == 1
    again = signdb("datasets", "delete", "photos", "--yes")
    assert again.returncode == 1 and "no dataset named 'photos'" in again.stderr


def test_datasets_delete_with_runs_takes_its_sweeps_and_their_studies(db_url, tmp_path):
    tree = named_tree(tmp_path / "photos", ["cat", "rocket"], 10)
    assert signdb("load", str(tree), "--dataset", "photos", "--size", "16").returncode == 0
    created = signdb("sweep", "create", "s", "--dataset", "photos", "--model", "softmax",
                     "--param", "lr=float:0.01:0.1", "--param", "iterations=2", "--trials", "1")  # fmt: skip
    assert created.returncode == 0, created.stderr
    refused = signdb("datasets", "delete", "photos", "--yes")
    assert refused.returncode == 1 and "is used by sweep s" in refused.stderr
    done = signdb("datasets", "delete", "photos", "--with-runs", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sweeps"] == ["s"] and done.stderr == ""
    with psycopg.connect(_conninfo(db_url)) as conn:
        assert conn.execute("SELECT count(*) FROM signdb.sweeps").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM optuna.studies").fetchone() == (0,)
    recreated = signdb("load", str(tree), "--dataset", "photos", "--size", "16")
    assert recreated.returncode == 0
    assert signdb("sweep", "create", "s", "--dataset", "photos", "--model", "softmax",
                  "--param", "lr=float:0.01:0.1", "--trials", "1").returncode == 0  # fmt: skip
