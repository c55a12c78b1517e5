"""The run queue with real `signdb worker` processes: exactly once, SIGKILL, SIGTERM, cancel,
priorities and queues.

Workers beat every second and are declared lost after 4 s, so a killed worker's
run is back in the queue within seconds. Runs are logistic regressions on two
labels of the mini subset: long enough to kill mid-run, seconds in all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb import training
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import get_engine, transaction
from signdb.loading import load_dataset
from signdb.queue import submit
from signdb.store import weights as weight_store
from tests.helpers import signdb, signdb_popen, train_spec

FAST = {"SIGNDB_WORKER_HEARTBEAT_SECONDS": "1", "SIGNDB_WORKER_GRACE_SECONDS": "4"}
LONG = 12_000  # logistic-regression steps: ~6 s on the mini subset
CHECKPOINT_EVERY = 500


def _spec(iterations: int, checkpoint_every: int = CHECKPOINT_EVERY, **kw):
    return train_spec(
        dataset="mini01",
        hyperparams={"iterations": iterations},
        checkpoint_every=checkpoint_every,
        **kw,
    )


@pytest.fixture
def queue_db(db_url: str, mini_dataset_dir: Path, tmp_path: Path) -> str:
    import shutil

    tree = tmp_path / "mini01"
    for label in ("0", "1"):
        shutil.copytree(mini_dataset_dir / label, tree / label)
    load_dataset(get_engine(db_url), tree, "mini01", Preprocessing(), workers=1)
    return db_url


@pytest.fixture
def pgq(queue_db: str):
    info = make_url(queue_db).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as conn:
        yield conn


class Workers:
    """`signdb worker` processes, their stderr in files; all stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp_path / f"worker{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = signdb_popen("worker", *args, env={**FAST, **(env or {})}, stdout=log, stderr=log)
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text()  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(tmp_path: Path):
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


def _wait_for(
    pg: psycopg.Connection, sql: str, params: list, ok, timeout: float = 60, what: str = ""
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = pg.execute(sql, params).fetchone()
        if ok(row):
            return row
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what or sql}: last {row}")


def _run(pg, run_id: int) -> tuple:
    return pg.execute(
        "SELECT status, attempt, steps_done, worker_pid, pid, error FROM signdb.runs WHERE id = %s",
        [run_id],
    ).fetchone()


def _final_weights(url: str, run_id: int) -> dict[str, np.ndarray]:
    with transaction(get_engine(url)) as session:
        step = weight_store.latest_step(session, run_id, final_only=True)
        _, tensors = weight_store.load_tensors(session, run_id, step, optimizer=False)
    return tensors


def _each_step_once(pg, run_id: int, steps: int) -> None:
    n, distinct = pg.execute(
        "SELECT count(*), count(DISTINCT step) FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost'",
        [run_id],
    ).fetchone()
    assert (n, distinct) == (steps, steps)


def test_six_runs_two_workers_each_run_exactly_once(queue_db, pgq, workers):
    engine = get_engine(queue_db)
    run_ids = [submit(engine, _spec(200, seed=s)) for s in range(6)]
    procs = [workers.start("--until-empty") for _ in range(2)]
    for proc in procs:
        assert proc.wait(120) == 0, workers.log(proc)
    rows = pgq.execute(
        "SELECT r.id, r.status, r.attempt, r.worker_pid, j.status::text, "
        "(SELECT count(*) FROM procrastinate.procrastinate_events e "
        " WHERE e.job_id = j.id AND e.type = 'started') "
        "FROM signdb.runs r JOIN procrastinate.procrastinate_jobs j ON j.id = r.job_id "
        "WHERE r.id = ANY(%s) ORDER BY r.id",
        [run_ids],
    ).fetchall()
    assert [r[0] for r in rows] == run_ids
    assert all(r[1:3] == ("succeeded", 1) for r in rows), rows
    assert all(r[4:] == ("succeeded", 1) for r in rows), rows  # one job, started once
    assert {r[3] for r in rows} <= {p.pid for p in procs}
    assert pgq.execute("SELECT count(*) FROM procrastinate.procrastinate_jobs").fetchone()[0] == 6
    started = pgq.execute(
        "SELECT count(*) FROM signdb.runs WHERE started_at > created_at AND finished_at > started_at"
    ).fetchone()[0]
    assert started == 6  # a queued run starts when a worker begins training it


def test_a_sigkilled_worker_s_run_resumes_elsewhere_with_the_same_weights(queue_db, pgq, workers):
    engine = get_engine(queue_db)
    reference = training.train(engine, _spec(LONG, name="uninterrupted"))
    run_id = submit(engine, _spec(LONG))
    procs = {p.pid: p for p in (workers.start(), workers.start())}
    status, attempt, done, worker_pid, trainer_pid, _ = _wait_for(
        pgq, "SELECT status, attempt, steps_done, worker_pid, pid, error FROM signdb.runs WHERE id = %s",
        [run_id], lambda r: r[0] == "running" and r[2] >= 2 * CHECKPOINT_EVERY, what="two checkpoints",
    )  # fmt: skip
    killed_at = pgq.execute("SELECT now()").fetchone()[0]
    os.kill(worker_pid, signal.SIGKILL)
    procs[worker_pid].wait(10)
    deadline = time.monotonic() + 10  # its trainer dies with it
    while time.monotonic() < deadline and _alive(trainer_pid):
        time.sleep(0.1)
    assert not _alive(trainer_pid), "the trainer outlived its SIGKILLed worker"
    status, attempt, done, new_worker, _, error = _wait_for(
        pgq, "SELECT status, attempt, steps_done, worker_pid, pid, error FROM signdb.runs WHERE id = %s",
        [run_id], lambda r: r[0] in ("succeeded", "failed"), timeout=90, what="the resumed run",
    )  # fmt: skip
    assert (status, attempt, done) == ("succeeded", 2, LONG), error
    assert new_worker != worker_pid and new_worker in procs
    # Resumed from a checkpoint, not from the start: the early steps' metrics are the first
    # attempt's, written before the kill; the last ones the second attempt's.
    first, last = pgq.execute(
        "SELECT min(recorded_at), max(recorded_at) FROM signdb.run_metrics WHERE run_id = %s",
        [run_id],
    ).fetchone()
    assert first < killed_at < last
    _each_step_once(pgq, run_id, LONG)
    ours, theirs = _final_weights(queue_db, run_id), _final_weights(queue_db, reference.run_id)
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    log = workers.log(procs[new_worker])
    assert f"run {run_id}: queued again to resume from its checkpoint" in log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_a_paused_worker_s_attempt_is_superseded_and_writes_nothing(queue_db, pgq, workers):
    """SIGSTOP a worker and its trainer past the grace: another worker resumes the run; on
    SIGCONT the old trainer's first transaction is refused and it exits, and the run ends
    as if nothing happened."""
    engine = get_engine(queue_db)
    # Checkpoints every 2,000 steps: the trainer is rarely inside a transaction when
    # stopped (one held open would keep the run row until PostgreSQL ends the session).
    reference = training.train(engine, _spec(LONG, checkpoint_every=2000, name="uninterrupted"))
    run_id = submit(engine, _spec(LONG, checkpoint_every=2000))
    paused = workers.start()
    _, _, _, _, trainer, _ = _wait_for(
        pgq, "SELECT status, attempt, steps_done, worker_pid, pid, error FROM signdb.runs WHERE id = %s",
        [run_id], lambda r: r[0] == "running" and r[2] >= 2000, what="a checkpoint",
    )  # fmt: skip
    for pid in (paused.pid, trainer):
        os.kill(pid, signal.SIGSTOP)
    try:
        taker = workers.start()
        _wait_for(pgq, "SELECT attempt, status FROM signdb.runs WHERE id = %s", [run_id],
                  lambda r: r == (2, "running"), timeout=60, what="attempt 2 running")  # fmt: skip
    finally:
        for pid in (trainer, paused.pid):
            os.kill(pid, signal.SIGCONT)
    status, attempt, done, worker_pid, _, error = _wait_for(
        pgq, "SELECT status, attempt, steps_done, worker_pid, pid, error FROM signdb.runs WHERE id = %s",
        [run_id], lambda r: r[0] in ("succeeded", "failed"), timeout=90, what="the run to end",
    )  # fmt: skip
    assert (status, attempt, done, worker_pid) == ("succeeded", 2, LONG, taker.pid), error
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "was superseded" not in workers.log(paused):
        time.sleep(0.2)
    log = workers.log(paused)
    assert f"run {run_id} attempt 1 was superseded by attempt 2" in log, log
    assert f"run {run_id}: attempt 1 was superseded by attempt 2; it wrote nothing more" in log
    assert not _alive(trainer)
    assert "closed by another worker's reaper while this worker was silent" in log
    assert "Traceback" not in log
    assert paused.poll() is None, log  # the woken worker goes on serving
    _each_step_once(pgq, run_id, LONG)
    ours, theirs = _final_weights(queue_db, run_id), _final_weights(queue_db, reference.run_id)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


def test_sigterm_checkpoints_and_queues_the_run_for_another_worker(queue_db, pgq, workers):
    engine = get_engine(queue_db)
    reference = training.train(engine, _spec(LONG, name="uninterrupted"))
    run_id = submit(engine, _spec(LONG))
    first = workers.start()
    _wait_for(pgq, "SELECT status, steps_done FROM signdb.runs WHERE id = %s", [run_id],
              lambda r: r[0] == "running" and r[1] >= CHECKPOINT_EVERY, what="a checkpoint")  # fmt: skip
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, workers.log(first)
    status, attempt, done, _, _, error = _run(pgq, run_id)
    assert status == "queued" and attempt == 1 and 0 < done < LONG
    assert "stopped; queued again to resume from its checkpoint" in error
    second = workers.start("--until-empty")
    assert second.wait(90) == 0, workers.log(second)
    status, attempt, done, worker_pid, _, _ = _run(pgq, run_id)
    assert (status, attempt, done, worker_pid) == ("succeeded", 2, LONG, second.pid)
    _each_step_once(pgq, run_id, LONG)
    ours, theirs = _final_weights(queue_db, run_id), _final_weights(queue_db, reference.run_id)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
    jobs = pgq.execute(
        "SELECT status::text FROM procrastinate.procrastinate_jobs ORDER BY id"
    ).fetchall()
    assert jobs == [("aborted",), ("succeeded",)]


def test_cancel_a_running_run_and_a_queued_one(queue_db, pgq, workers):
    engine = get_engine(queue_db)
    running = submit(engine, _spec(LONG * 4), priority=1)
    waiting = submit(engine, _spec(50))
    worker = workers.start()
    _wait_for(pgq, "SELECT status, steps_done FROM signdb.runs WHERE id = %s", [running],
              lambda r: r[0] == "running" and r[1] >= CHECKPOINT_EVERY, what="a checkpoint")  # fmt: skip
    cancelled = signdb("runs", "cancel", str(waiting), "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert '"status": "cancelled"' in cancelled.stdout
    asked = signdb("runs", "cancel", str(running))
    assert asked.returncode == 0 and "stops at its next step" in asked.stdout
    status, *_, error = _wait_for(
        pgq, "SELECT status, steps_done, error FROM signdb.runs WHERE id = %s", [running],
        lambda r: r[0] != "running", what="the cancel",
    )  # fmt: skip
    assert status == "cancelled" and "cancelled while running" in error
    checkpoints = pgq.execute(
        "SELECT count(DISTINCT step) FROM signdb.weights WHERE run_id = %s", [running]
    ).fetchone()[0]
    assert checkpoints >= 2  # the regular ones and the one written on the way out
    assert _run(pgq, waiting)[:3] == ("cancelled", 0, 0)  # never started
    again = signdb("runs", "cancel", str(running))
    assert again.returncode == 1 and "already cancelled" in again.stderr
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, workers.log(worker)


def test_priorities_and_queues(queue_db, pgq, workers):
    engine = get_engine(queue_db)
    low = submit(engine, _spec(100))
    high = submit(engine, _spec(100), priority=10)
    gpu = submit(engine, _spec(100), queue="gpu")
    worker = workers.start("--queue", "default", "--queue", "cpu", "--until-empty")
    assert worker.wait(90) == 0, workers.log(worker)
    log = workers.log(worker)
    assert "no run has ever been submitted to queue 'cpu'" in log
    assert "queue 'default'" not in log
    started = dict(
        pgq.execute(
            "SELECT r.id, e.at FROM signdb.runs r JOIN procrastinate.procrastinate_events e "
            "ON e.job_id = r.job_id AND e.type = 'started' WHERE r.id = ANY(%s)",
            [[low, high, gpu]],
        ).fetchall()
    )
    assert set(started) == {low, high}  # the gpu run never went to this worker
    assert started[high] < started[low]  # submitted last, started first
    assert _run(pgq, gpu)[:2] == ("queued", 0)
    assert _run(pgq, low)[0] == _run(pgq, high)[0] == "succeeded"


def test_two_workers_keep_going_through_a_server_restart(mini_dataset_dir, tmp_path, workers):
    """A private embedded server (the session's shared one must not restart under others)."""
    import shutil
    import tempfile

    from signdb.db.embedded import EmbeddedServer

    root = Path(tempfile.mkdtemp(prefix="signdb-queue-restart-"))
    root.chmod(0o755)
    server = EmbeddedServer(root / "home")
    try:
        url = server.ensure_running()
        env = {"SIGNDB_DATABASE_URL": url}
        assert signdb("db", "upgrade", env=env).returncode == 0
        tree = tmp_path / "mini01"
        for label in ("0", "1"):
            shutil.copytree(mini_dataset_dir / label, tree / label)
        assert signdb("load", str(tree), "--dataset", "mini01", env=env).returncode == 0
        engine = get_engine(url)
        run_ids = [submit(engine, _spec(LONG, seed=s)) for s in range(2)]
        engine.dispose()
        procs = [workers.start(env=env) for _ in range(2)]
        info = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(info, autocommit=True) as pg:
            _wait_for(pg, "SELECT count(*) FROM signdb.runs WHERE status = 'running' AND steps_done > 0",
                      [], lambda r: r[0] == 2, what="both runs training")  # fmt: skip
        server.stop("fast")
        time.sleep(2.0)
        server.ensure_running()
        with psycopg.connect(info, autocommit=True) as pg:
            rows = _wait_for(
                pg, "SELECT array_agg(status ORDER BY id), array_agg(attempt ORDER BY id) "
                "FROM signdb.runs", [], lambda r: set(r[0]) <= {"succeeded", "failed"},
                timeout=120, what="both runs to end",
            )  # fmt: skip
            assert rows == (["succeeded", "succeeded"], [1, 1])  # nothing lost, nothing re-queued
            for run_id in run_ids:
                _each_step_once(pg, run_id, LONG)
            # The workers are still there and still listening: a new run is taken at once.
            assert all(p.poll() is None for p in procs), [workers.log(p) for p in procs]
            late = submit(get_engine(url), _spec(50))
            _wait_for(pg, "SELECT status FROM signdb.runs WHERE id = %s", [late],
                      lambda r: r[0] == "succeeded", timeout=30, what="a run after the restart")  # fmt: skip
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, workers.log(proc)
    finally:
        workers.stop_all()
        get_engine(url).dispose()
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
