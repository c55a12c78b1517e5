"""Sweep workers as real processes on one real PostgreSQL: sharing, kills, stops, signals.

Every worker here is a `signdb sweep work` process. The sweeps that kill or
stop a worker use a 1 s heartbeat and a 3 s grace period, so a dead worker's
trial is failed (and queued again) within seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import psycopg
import pytest

import signdb
from signdb.sweeps import SweepRequest, create_sweep
from tests.helpers import signdb_popen

#: Epochs of a trial that lasts a few seconds (about 28,000 steps of 0.2 ms), long
#: enough to kill or stop a worker in the middle of it.
LONG = 2000
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def digits(db_url, mini_dataset_dir, tmp_path):
    for label in ("0", "1", "2"):
        shutil.copytree(mini_dataset_dir / label, tmp_path / "digits" / label)
    db = signdb.connect(db_url)
    db.load(tmp_path / "digits", "digits", size=32, workers=1)
    return db


def _create(db, name: str, *, iterations: int, trials: int | None = None, **kw) -> None:
    params = kw.pop("params", ("lr=loguniform:0.001:0.01",))
    request = SweepRequest(
        name=name,
        dataset="digits",
        model="mlp",
        classes=None,
        params=(*params, "hidden=[16]", f"iterations={iterations}", "batch_size=4"),
        trials=trials,
        prune=False,
        **kw,
    )
    create_sweep(db.engine, request)


def _worker(name: str) -> subprocess.Popen:
    return signdb_popen(
        "sweep", "work", name, "--json", env=ONE_THREAD, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def _trials(pg: psycopg.Connection, sweep: str) -> list[tuple]:
    """(number, state, retry_of, params, value) per trial."""
    return pg.execute(
        "SELECT DISTINCT trial_number, state, retry_of, params::text, objective "
        "FROM signdb.sweep_trials WHERE sweep = %s ORDER BY 1",
        [sweep],
    ).fetchall()


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _mid_trial(pg: psycopg.Connection, sweep: str) -> tuple[int, int]:
    """Wait until a run of the sweep has trained some steps: (trial number, run id)."""
    found: list[tuple[int, int]] = []

    def training() -> bool:
        found[:] = pg.execute(
            "SELECT r.trial_number, r.id FROM signdb.runs r WHERE r.sweep = %s "
            "AND r.status = 'running' AND EXISTS "
            "(SELECT FROM signdb.run_metrics m WHERE m.run_id = r.id)",
            [sweep],
        ).fetchall()
        return bool(found)

    _wait_for(training, "a worker to be in the middle of a trial")
    return found[0]


def test_three_workers_share_a_sweep_and_run_each_trial_once(digits, pg):
    _create(digits, "three", iterations=60, trials=12, repeats=2)
    workers = [_worker("three") for _ in range(3)]
    results = [_finish(w) for w in workers]
    for rc, _, err in results:
        assert rc == 0, err
    ran = [[t["number"] for t in out["trials"]] for _, out, _ in results]
    assert all(ran), f"a worker ran no trial: {ran}"
    numbers = sorted(n for r in ran for n in r)
    assert numbers == list(range(12)), "every trial once, none twice"
    assert _trials(pg, "three") and {t[1] for t in _trials(pg, "three")} == {"COMPLETE"}
    runs = pg.execute(
        "SELECT count(*), count(DISTINCT (trial_number, sweep_repeat)), "
        "count(*) FILTER (WHERE status = 'succeeded') FROM signdb.runs WHERE sweep = 'three'"
    ).fetchone()
    assert runs == (24, 24, 24)
    # Each worker read the 72 images once, however many runs it trained.
    assert [out["images_read"] for _, out, _ in results] == [72, 72, 72]
    assert max(len(r) for r in ran) >= 4


def test_grid_with_two_workers_runs_each_point_exactly_once(digits, pg):
    params = ("lr=choice:0.002,0.005", "l2=choice:0,0.0001,0.001")
    _create(digits, "grid", iterations=3, sampler="grid", params=params)
    results = [_finish(w) for w in [_worker("grid"), _worker("grid")]]
    assert [rc for rc, _, _ in results] == [0, 0], [err for _, _, err in results]
    trials = _trials(pg, "grid")
    assert len(trials) == 6 and {t[1] for t in trials} == {"COMPLETE"}
    assert len({t[3] for t in trials}) == 6


def test_a_killed_workers_trial_is_failed_retried_once_and_the_sweep_finishes(digits, pg):
    _create(digits, "kill", iterations=LONG, trials=2, heartbeat_seconds=1, grace_seconds=3)
    victim = _worker("kill")
    number, run_id = _mid_trial(pg, "kill")
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    rc, out, err = _finish(_worker("kill"))
    assert rc == 0, err
    trials = {t[0]: t for t in _trials(pg, "kill")}
    assert trials[number][1] == "FAIL"
    (retry,) = [t for t in trials.values() if t[2] == number]
    assert retry[1] == "COMPLETE" and retry[3] == trials[number][3]  # the same parameters
    assert sum(t[1] == "COMPLETE" for t in trials.values()) == 2
    assert len(trials) == 3  # retried once, nothing else added
    ((status, error),) = pg.execute(
        "SELECT status, error FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchall()
    assert status in ("interrupted", "failed") and "heartbeats" in error


def test_a_stopped_worker_does_not_overwrite_the_retry_and_exits_with_a_message(digits, pg):
    _create(digits, "stop", iterations=LONG, trials=2, heartbeat_seconds=1, grace_seconds=3)
    sleeper = _worker("stop")
    number, run_id = _mid_trial(pg, "stop")
    os.kill(sleeper.pid, signal.SIGSTOP)
    try:
        time.sleep(4.5)  # past the grace period
        rc, out, err = _finish(_worker("stop"))  # reaps, retries and finishes the sweep
        assert rc == 0, err
        finished = _trials(pg, "stop")
        assert [t[1] for t in finished].count("COMPLETE") == 2
        assert {t[0]: t[1] for t in finished}[number] == "FAIL"
    finally:
        os.kill(sleeper.pid, signal.SIGCONT)
    rc, out, err = _finish(sleeper, timeout=120)
    assert rc == 1 and out is None
    assert "was failed by a reaper" in err and "cannot overwrite the trial's retry" in err
    assert err.count("\n") == 1
    assert _trials(pg, "stop") == finished, "the resumed worker changed a trial"
    ((status, error),) = pg.execute(
        "SELECT status, error FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchall()
    assert status == "interrupted" and "failed by a reaper" in error


def test_sigterm_interrupts_the_run_fails_the_trial_and_queues_it_again(digits, pg):
    _create(digits, "term", iterations=LONG, trials=2)
    worker = _worker("term")
    number, run_id = _mid_trial(pg, "term")
    worker.send_signal(signal.SIGTERM)
    rc, out, err = _finish(worker, timeout=60)
    assert rc == 0, err
    assert out["stopped"] and f"trial {number} was stopped" in out["stopped"]
    assert run_id in out["run_ids"]
    trials = {t[0]: t for t in _trials(pg, "term")}
    assert trials[number][1] == "FAIL"
    (retry,) = [t for t in trials.values() if t[2] == number]
    assert retry[1] == "WAITING" and retry[3] == trials[number][3]
    ((status, error),) = pg.execute(
        "SELECT status, error FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchall()
    assert status == "interrupted" and "SIGTERM" in error
