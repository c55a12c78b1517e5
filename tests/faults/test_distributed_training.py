"""One run on two gloo processes, launched as a user would: torchrun, or signdb train --nproc.

Real processes throughout: two ranks train one run, a rank is killed with
SIGKILL, torchrun restarts every rank. The model has no batch norm and no
augmentation, so two ranks at batch b must end where one process at 2b does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb.db.engine import get_engine, transaction
from signdb.store import weights as weight_store
from tests.helpers import signdb, signdb_popen

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: 59 train images of digits 0-2; a global batch of 12 leaves 11 last: 6 and 5 per rank.
TRAIN = ["--dataset", "mini", "--classes", "0,1,2", "--model", "cnn", "--engine", "torch",
         "--layers", "conv4-pool-dense8", "--param", "batch_norm=false",
         "--param", "augment=false", "--batch-size", "12", "--eval-every", "25"]  # fmt: skip
#: A rank that dies must fail the run, naming it, within this many seconds.
DEATH_BOUND = 60


def _torchrun(*args: str, nproc: int = 2, launcher: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", *launcher, "-m", "signdb", "train", *args]  # fmt: skip


def _run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _query(url: str, sql: str, params: list | None = None) -> list[tuple]:
    info = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def _final(url: str, run_id: int) -> dict[str, np.ndarray]:
    with transaction(get_engine(url)) as session:
        step = weight_store.latest_step(session, run_id, final_only=True)
        return weight_store.load_tensors(session, run_id, step, optimizer=False)[1]


def _result(proc: subprocess.CompletedProcess) -> dict:
    """The launch's one JSON object: rank 0 prints it, the other ranks nothing."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def two_launches(trained_db: str):
    """The same two-rank launch twice, through torchrun."""
    os.environ["SIGNDB_DATABASE_URL"] = trained_db
    try:
        before = _query(trained_db, "SELECT coalesce(max(id), 0) FROM signdb.runs")[0][0]
        cmd = _torchrun(*TRAIN, "--iterations", "3", "--json")
        results = [_result(_run(cmd)) for _ in range(2)]
        created = _query(trained_db, "SELECT count(*) FROM signdb.runs WHERE id > %s", [before])
    finally:
        del os.environ["SIGNDB_DATABASE_URL"]
    return trained_db, results, created[0][0]


def test_two_ranks_log_one_run_once(two_launches):
    url, results, created = two_launches
    assert created == 2  # one run row per launch, not one per rank
    run_id = results[0]["run_id"]
    assert results[0]["status"] == "succeeded" and results[0]["steps"] == 15  # 5 a epoch
    ((world, status, done, total, key),) = _query(
        url,
        "SELECT world_size, status, steps_done, total_steps, launch_key FROM signdb.runs "
        "WHERE id = %s",
        [run_id],
    )
    assert (world, status, done, total) == (2, "succeeded", 15, 15)
    assert key.startswith("torchrun:")
    metrics = _query(
        url,
        "SELECT name, count(*), count(DISTINCT step), min(step), max(step) "
        "FROM signdb.run_metrics WHERE run_id = %s AND name IN ('cost', 'train_accuracy') "
        "GROUP BY name",
        [run_id],
    )
    assert sorted(metrics) == [("cost", 15, 15, 0, 14), ("train_accuracy", 15, 15, 0, 14)]
    weights = _query(
        url,
        "SELECT count(DISTINCT step), count(*) FILTER (WHERE tensor = 'dense0.weight') "
        "FROM signdb.weights WHERE run_id = %s AND final",
        [run_id],
    )
    assert weights == [(1, 1)]  # one set of final weights, written once


def test_two_identical_launches_give_identical_weights(two_launches):
    url, results, _ = two_launches
    a, b = (_final(url, r["run_id"]) for r in results)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_two_ranks_at_batch_b_end_where_one_rank_at_2b_does(two_launches, monkeypatch):
    url, results, _ = two_launches
    monkeypatch.setenv("SIGNDB_DATABASE_URL", url)
    one = signdb("train", *TRAIN, "--iterations", "3", "--json")
    assert one.returncode == 0, one.stderr
    alone = json.loads(one.stdout)
    assert alone["steps"] == results[0]["steps"]
    ranks, single = _final(url, results[0]["run_id"]), _final(url, alone["run_id"])
    for key, value in single.items():
        assert np.allclose(ranks[key], value, rtol=0, atol=1e-5), key
    assert results[0]["test_accuracy"] == alone["test_accuracy"]


def _rank_pid(parent: int, rank: int, deadline: float) -> int:
    """The pid of rank ``rank`` among ``parent``'s descendants (torchrun's environment says)."""
    while time.monotonic() < deadline:
        for pid in _descendants(parent):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            torchrun = any(e.startswith(b"TORCHELASTIC_RUN_ID=") for e in env)
            if torchrun and f"RANK={rank}".encode() in env:
                return pid
        time.sleep(0.1)
    pytest.fail(f"no rank {rank} under pid {parent}")


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for c in children for d in _descendants(c)]


def _wait_for_checkpoint(url: str, after: int, deadline: float) -> int:
    """The newest run (of id > ``after``) once it has a checkpoint (steps_done > 0)."""
    while time.monotonic() < deadline:
        rows = _query(
            url,
            "SELECT id, steps_done FROM signdb.runs WHERE id > %s ORDER BY id DESC LIMIT 1",
            [after],
        )
        if rows and rows[0][1] > 0:
            return rows[0][0]
        time.sleep(0.1)
    pytest.fail("the run never reached its first checkpoint")


def test_a_killed_rank_fails_the_run_naming_it_and_resume_finishes_it(trained_url):
    before = _query(trained_url, "SELECT coalesce(max(id), 0) FROM signdb.runs")[0][0]
    proc = signdb_popen(
        "train", *TRAIN, "--iterations", "20", "--checkpoint-every", "10", "--nproc", "2",
        "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        run_id = _wait_for_checkpoint(trained_url, before, deadline)
        victim = _rank_pid(proc.pid, 1, deadline)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < DEATH_BOUND:
            ((status, error),) = _query(
                trained_url, "SELECT status, error FROM signdb.runs WHERE id = %s", [run_id]
            )
            if status != "running":
                break
            time.sleep(0.1)
        failed_after = time.monotonic() - killed
        out, err = proc.communicate(timeout=DEATH_BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == "failed" and failed_after < DEATH_BOUND, (status, failed_after, err[-3000:])
    # Named by rank 0, which saw its collective fail (or, were it too slow to say so
    # before the launcher stopped it, by the launcher, which saw rank 1 die).
    assert f"rank 1 of 2 (pid {victim}" in error and ("died" in error or "killed" in error)
    assert proc.returncode == 1 and out == ""
    assert f"rank 1 of 2 (pid {victim}" in err and "Traceback" not in err, err
    assert f"signdb train --resume {run_id} --nproc" in error

    # Resumed on one process (another world size) from the last checkpoint, to the end.
    resumed = signdb("train", "--resume", str(run_id), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    ((status, world, done, total),) = _query(
        trained_url,
        "SELECT status, world_size, steps_done, total_steps FROM signdb.runs WHERE id = %s",
        [run_id],
    )
    assert (status, world, done) == ("succeeded", 1, total)
    ((n, distinct, last),) = _query(
        trained_url,
        "SELECT count(*), count(DISTINCT step), max(step) FROM signdb.run_metrics "
        "WHERE run_id = %s AND name = 'cost'",
        [run_id],
    )
    assert (n, distinct, last) == (total, total, total - 1)


def test_sigterm_stops_every_rank_at_one_step_and_the_run_is_interrupted(trained_url):
    """The launcher passes SIGTERM to every rank; they agree on the step to stop at."""
    before = _query(trained_url, "SELECT coalesce(max(id), 0) FROM signdb.runs")[0][0]
    proc = signdb_popen(
        "train", *TRAIN, "--iterations", "200", "--checkpoint-every", "5", "--nproc", "2",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        run_id = _wait_for_checkpoint(trained_url, before, time.monotonic() + 120)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEATH_BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "SIGTERM stopped the launch's 2 processes" in err
    ((status, done, error),) = _query(
        trained_url, "SELECT status, steps_done, error FROM signdb.runs WHERE id = %s", [run_id]
    )
    assert status == "interrupted" and error.startswith(f"run {run_id} interrupted by SIGTERM")
    # A checkpoint at the step every rank stopped after, and no metric past it.
    ((last_weights,),) = _query(
        trained_url, "SELECT max(step) FROM signdb.weights WHERE run_id = %s", [run_id]
    )
    ((last_metric, n),) = _query(
        trained_url,
        "SELECT max(step), count(*) FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost'",
        [run_id],
    )
    assert last_weights == done == last_metric + 1 == n


def test_torchrun_restarting_every_rank_continues_the_same_run(trained_url):
    before = _query(trained_url, "SELECT coalesce(max(id), 0) FROM signdb.runs")[0][0]
    cmd = _torchrun(*TRAIN, "--iterations", "20", "--checkpoint-every", "10", "--json",
                    launcher=("--max-restarts=1",))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        run_id = _wait_for_checkpoint(trained_url, before, deadline)
        os.kill(_rank_pid(proc.pid, 1, deadline), signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert _result(subprocess.CompletedProcess(cmd, 0, out, err))["run_id"] == run_id
    runs = _query(
        trained_url, "SELECT id, status, world_size FROM signdb.runs WHERE id > %s", [before]
    )
    assert runs == [(run_id, "succeeded", 2)]  # the restart went on with the same run
    ((n, distinct),) = _query(
        trained_url,
        "SELECT count(*), count(DISTINCT step) FROM signdb.run_metrics "
        "WHERE run_id = %s AND name = 'cost'",
        [run_id],
    )
    assert n == distinct == 100


def test_your_own_loop_logs_one_run_from_every_rank(trained_url):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(EXAMPLES / "torch_distributed.py"), "--dataset", "mini", "--epochs", "2"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = int(proc.stdout.split()[-1])
    ((status, world, model),) = _query(
        trained_url, "SELECT status, world_size, model FROM signdb.runs WHERE id = %s", [run_id]
    )
    assert (status, world, model) == ("succeeded", 2, "torch:ddp-linear")
    ((n, distinct),) = _query(
        trained_url,
        "SELECT count(*), count(DISTINCT step) FROM signdb.run_metrics WHERE run_id = %s",
        [run_id],
    )
    assert n == distinct > 0  # logged once per step, by rank 0
    assert (
        _query(trained_url, "SELECT count(*) FROM signdb.predictions WHERE run_id = %s", [run_id])[
            0
        ][0]
        > 0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dataset", "mini", "--model", "logreg", "--nproc", "2"],
            "--nproc 2 needs --engine torch",
        ),
        ([*TRAIN, "--batch-size", "13", "--nproc", "2"], "batch size 13 does not split evenly"),
    ],
)
def test_what_cannot_train_on_several_processes_is_refused(trained_url, args, message):
    refused = signdb("train", *args)
    assert refused.returncode == 1
    assert message in refused.stderr
