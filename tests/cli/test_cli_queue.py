"""`signdb submit`, `signdb queue`, `signdb runs cancel`, `signdb sweep submit` and a worker
running a sweep's jobs, through the real entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import signdb

FAST = {"SIGNDB_WORKER_HEARTBEAT_SECONDS": "1", "SIGNDB_WORKER_GRACE_SECONDS": "4"}


@pytest.fixture
def loaded(db_url: str, mini_dataset_dir: Path, tmp_path: Path) -> str:
    tree = tmp_path / "mini01"
    for label in ("0", "1"):
        shutil.copytree(mini_dataset_dir / label, tree / label)
    assert signdb("load", str(tree), "--dataset", "mini", "--workers", "1").returncode == 0
    return db_url


def test_submit_prints_the_queued_run_and_queue_lists_it(loaded):
    done = signdb("submit", "--dataset", "mini", "--iterations", "5", "--queue", "gpu",
                  "--priority", "2", "--name", "later", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"run_id": result["run_id"], "status": "queued", "queue": "gpu", "priority": 2}
    shown = signdb("queue", "--json")
    [row] = json.loads(shown.stdout)["runs"]
    assert (row["run_id"], row["queue"], row["priority"], row["attempt"]) == (
        result["run_id"], "gpu", 2, 0,
    )  # fmt: skip
    table = signdb("queue")
    assert "gpu" in table.stdout and "queued" in table.stdout
    human = signdb("submit", "--dataset", "mini", "--iterations", "5")
    assert human.returncode == 0 and "queued on default (priority 0)" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "no dataset named 'nope'"),
        (["--dataset", "mini", "--classes", "0,cat"], "class 'cat' is not in dataset 'mini'"),
        (["--dataset", "mini", "--hidden", "a,b"], "hidden takes layer sizes joined by '-'"),
        (["--dataset", "mini", "--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
        (["--dataset", "mini", "--device", "cuda"], "--device cuda needs --engine torch"),
        (["--dataset", "mini", "--queue", "x" * 41], "use at most 40"),
    ],
)
def test_submit_fails_like_train_and_queues_nothing(loaded, pg, args, message):
    submitted = signdb("submit", *args)
    assert submitted.returncode == 1
    assert message in submitted.stderr and submitted.stderr.count("\n") == 1, submitted.stderr
    if "--queue" not in args:
        trained = signdb("train", *args)
        assert trained.returncode == 1 and trained.stderr == submitted.stderr
    assert pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == 0
    assert pg.execute("SELECT count(*) FROM procrastinate.procrastinate_jobs").fetchone()[0] == 0


def test_submit_needs_a_dataset(loaded):
    done = signdb("submit")
    assert done.returncode == 2 and "--dataset is required" in done.stderr


def test_runs_cancel_of_a_queued_run(loaded):
    run_id = json.loads(signdb("submit", "--dataset", "mini", "--json").stdout)["run_id"]
    done = signdb("runs", "cancel", str(run_id))
    assert done.returncode == 0 and done.stdout.strip() == f"run {run_id} cancelled"
    assert json.loads(signdb("queue", "--json").stdout) == {"runs": []}
    missing = signdb("runs", "cancel", "999")
    assert missing.returncode == 1 and "no run with id 999" in missing.stderr


def test_a_sweep_submitted_to_the_queue_runs_on_a_worker(loaded, pg):
    created = signdb(
        "sweep", "create", "s", "--dataset", "mini", "--param", "lr=float:0.01:0.1",
        "--param", "iterations=3", "--trials", "2", "--submit", "1", "--queue", "sweeps", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["submitted"] == 1
    more = signdb("sweep", "submit", "s", "1", "--queue", "sweeps", "--json")
    assert json.loads(more.stdout)["workers"] == 1
    unknown = signdb("sweep", "submit", "nope", "1")
    assert unknown.returncode == 1 and "no sweep named 'nope'" in unknown.stderr
    worker = signdb("worker", "--queue", "sweeps", "--until-empty", env=FAST, timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert worker.stderr.count("a sweep worker starts") == 2
    states = pg.execute("SELECT state FROM signdb.sweep_trials ORDER BY trial_number").fetchall()
    assert states == [("COMPLETE",), ("COMPLETE",)]
    jobs = pg.execute("SELECT status::text FROM procrastinate.procrastinate_jobs").fetchall()
    assert jobs == [("succeeded",), ("succeeded",)]


def test_worker_refuses_a_grace_shorter_than_three_heartbeats(loaded):
    done = signdb("worker", env={"SIGNDB_WORKER_HEARTBEAT_SECONDS": "5",
                                 "SIGNDB_WORKER_GRACE_SECONDS": "10"})  # fmt: skip
    assert done.returncode == 1 and "at least three heartbeats" in done.stderr
