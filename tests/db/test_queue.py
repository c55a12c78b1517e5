"""The run queue in the database: submit, cancel, claims, fencing, the reaper, grants, drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError

from signdb.data.preprocess import Preprocessing
from signdb.db import migrate
from signdb.db.engine import get_engine, transaction
from signdb.errors import InvalidArgument, NotFound
from signdb.loading import load_dataset
from signdb.queue import cancel_run, queue_overview, submit
from signdb.queue.reaper import reap
from signdb.store import queue as queue_store
from tests.helpers import train_spec


def _spec(**kw):
    """A TrainSpec from flat keywords; ``iterations`` and ``lr`` are model hyperparameters."""
    hyper = {k: kw.pop(k) for k in ("iterations", "lr") if k in kw}
    return train_spec(hyperparams=hyper, **kw)


@pytest.fixture
def mini(db_url: str, mini_dataset_dir: Path) -> str:
    load_dataset(get_engine(db_url), mini_dataset_dir, "mini", Preprocessing(), workers=1)
    return db_url


def _counts(pg: psycopg.Connection) -> tuple[int, int]:
    runs = pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0]
    jobs = pg.execute("SELECT count(*) FROM procrastinate.procrastinate_jobs").fetchone()[0]
    return runs, jobs


def test_submit_creates_the_queued_run_and_its_job_together(mini, pg):
    run_id = submit(get_engine(mini), _spec(dataset="mini", iterations=5), queue="gpu", priority=3)
    status, queue, priority, job_id, attempt, host = pg.execute(
        "SELECT status, queue, priority, job_id, attempt, host FROM signdb.runs WHERE id = %s",
        [run_id],
    ).fetchone()
    assert (status, queue, priority, attempt, host) == ("queued", "gpu", 3, 0, None)
    job = pg.execute(
        "SELECT queue_name, task_name, priority, status::text, args FROM "
        "procrastinate.procrastinate_jobs WHERE id = %s",
        [job_id],
    ).fetchone()
    assert job == ("gpu", "signdb.run", 3, "todo", {"run_id": run_id, "lost": 0})
    # The split is assigned at submit, so a bad split is refused there.
    assert (
        pg.execute("SELECT count(*) FROM signdb.run_images WHERE run_id = %s", [run_id]).fetchone()[
            0
        ]
        == 48
    )
    [row] = queue_overview(get_engine(mini))
    assert (row["run_id"], row["status"], row["queue"], row["priority"]) == (
        run_id,
        "queued",
        "gpu",
        3,
    )


BAD_SUBMISSIONS = [
    ({"dataset": "nope"}, NotFound, "no dataset named 'nope'"),
    ({"dataset": "mini", "classes": ["0", "cat"]}, InvalidArgument, "class 'cat'"),
    ({"dataset": "mini", "test_fraction": 1.5}, InvalidArgument, "test"),
    ({"dataset": "mini", "lr": -1.0}, InvalidArgument, "lr"),
    ({"dataset": "mini", "model": "nope"}, InvalidArgument, "nope"),
    ({"dataset": "mini", "name": ""}, InvalidArgument, "name"),
    ({"dataset": "mini", "test_fraction": 0.001}, InvalidArgument, "test split"),
    ({"dataset": "mini", "val_fraction": -0.1}, InvalidArgument, "val"),
    ({"dataset": "mini", "iterations": 0}, InvalidArgument, "iterations"),
]


@pytest.mark.parametrize(("spec", "error", "words"), BAD_SUBMISSIONS)
def test_submit_refuses_what_train_refuses_and_queues_nothing(mini, pg, spec, error, words):
    from signdb import training

    with pytest.raises(error) as trained:
        training.train(get_engine(mini), _spec(**spec))
    before = _counts(pg)
    with pytest.raises(error) as submitted:
        submit(get_engine(mini), _spec(**spec))
    assert str(submitted.value) == str(trained.value)
    assert words in str(submitted.value)
    assert _counts(pg) == before


@pytest.mark.parametrize(
    ("queue", "priority", "words"),
    [
        ("", 0, "--queue"),
        ("q" * 41, 0, "at most 40"),
        ("default", 2**31, "32 bits"),
        ("x", True, "integer"),
    ],
)
def test_submit_refuses_a_bad_queue_or_priority(mini, pg, queue, priority, words):
    with pytest.raises(InvalidArgument, match=words):
        submit(get_engine(mini), _spec(dataset="mini"), queue=queue, priority=priority)
    assert _counts(pg) == (0, 0)


def test_cancel_a_queued_run_and_what_cannot_be_cancelled(mini, pg):
    from signdb import training

    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    assert cancel_run(engine, run_id) == {
        "run_id": run_id,
        "status": "cancelled",
        "cancel_requested": False,
    }
    status, job_id, finished = pg.execute(
        "SELECT status, job_id, finished_at IS NOT NULL FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert (status, finished) == ("cancelled", True)
    job = pg.execute(
        "SELECT status::text FROM procrastinate.procrastinate_jobs WHERE id = %s", [job_id]
    )
    assert job.fetchone()[0] == "cancelled"
    with pytest.raises(InvalidArgument, match="already cancelled"):
        cancel_run(engine, run_id)
    trained = training.train(engine, _spec(dataset="mini", iterations=3))
    with pytest.raises(InvalidArgument, match="not submitted to the queue"):
        cancel_run(engine, trained.run_id)
    with pytest.raises(NotFound):
        cancel_run(engine, 10_000)


def test_cancel_of_a_claimed_run_asks_its_worker_to_abort(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    job_id = _fetch_as_dead_worker(pg, seconds_ago=0)
    result = cancel_run(engine, run_id)
    assert result == {"run_id": run_id, "status": "queued", "cancel_requested": True}
    row = pg.execute(
        "SELECT status::text, abort_requested FROM procrastinate.procrastinate_jobs WHERE id = %s",
        [job_id],
    ).fetchone()
    assert row == ("doing", True)


def _writer_engine(url: str):
    """An engine whose every transaction runs as signdb_writer, as the server's editor requests."""
    engine = create_engine(get_engine(url).url)

    @event.listens_for(engine, "begin")
    def _role(conn):  # noqa: ANN001
        conn.exec_driver_sql("SET LOCAL ROLE signdb_writer")

    return engine


def test_submit_and_cancel_work_with_only_the_writer_role(mini, pg):
    engine = _writer_engine(mini)
    try:
        run_id = submit(engine, _spec(dataset="mini", iterations=5), queue="gpu")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "signdb_writer"
        assert [r["run_id"] for r in queue_overview(engine)] == [run_id]
        assert cancel_run(engine, run_id)["status"] == "cancelled"
    finally:
        engine.dispose()
    assert pg.execute("SELECT status FROM signdb.runs WHERE id = %s", [run_id]).fetchone() == (
        "cancelled",
    )


def test_the_analyst_reads_the_queue_and_cannot_use_it(mini, pg):
    submit(get_engine(mini), _spec(dataset="mini", iterations=5))
    pg.execute("BEGIN")
    try:
        pg.execute("SET LOCAL ROLE signdb_analyst")
        assert (
            pg.execute("SELECT count(*) FROM procrastinate.procrastinate_jobs").fetchone()[0] == 1
        )
        pg.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg.execute(
                "SET LOCAL search_path TO procrastinate; "
                "SELECT procrastinate.procrastinate_cancel_job_v1(1, true, false)"
            )
        pg.execute("ROLLBACK TO SAVEPOINT s")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg.execute("UPDATE procrastinate.procrastinate_jobs SET priority = 9")
    finally:
        pg.execute("ROLLBACK")


def _fetch_as_dead_worker(pg: psycopg.Connection, *, seconds_ago: float) -> int:
    """A worker row whose heartbeat is ``seconds_ago`` old takes the next job (procrastinate's
    own fetch); returns the job id."""
    worker = pg.execute(
        "INSERT INTO procrastinate.procrastinate_workers (last_heartbeat) "
        "VALUES (now() - make_interval(secs => %s)) RETURNING id",
        [seconds_ago],
    ).fetchone()[0]
    pg.execute("SET search_path TO procrastinate")
    job = pg.execute("SELECT id FROM procrastinate_fetch_job_v2(NULL, %s)", [worker]).fetchone()[0]
    pg.execute("RESET search_path")
    return job


def _claim(url: str, run_id: int, job_id: int, pid: int = 4242) -> int | None:
    with transaction(get_engine(url)) as session:
        return queue_store.claim_run(session, run_id, job_id, "host-a", pid)


def test_a_claim_numbers_the_attempt_and_a_stale_job_claims_nothing(mini, pg):
    run_id = submit(get_engine(mini), _spec(dataset="mini", iterations=5))
    job_id = pg.execute("SELECT job_id FROM signdb.runs WHERE id = %s", [run_id]).fetchone()[0]
    assert _claim(mini, run_id, job_id) == 1
    assert _claim(mini, run_id, job_id) == 1  # our own claim again (a retried commit)
    assert _claim(mini, run_id, job_id + 1) is None  # not the run's job
    host, pid = pg.execute(
        "SELECT worker_host, worker_pid FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert (host, pid) == ("host-a", 4242)


def test_a_superseded_attempt_is_refused_in_the_database(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    job_id = pg.execute("SELECT job_id FROM signdb.runs WHERE id = %s", [run_id]).fetchone()[0]
    assert _claim(mini, run_id, job_id) == 1
    with transaction(engine) as session:
        queue_store.check_attempt(session, run_id, 1)  # current: accepted
        new_job = queue_store.requeue(session, run_id, 1, reason="test", lost=0)
    assert _claim(mini, run_id, new_job, pid=5151) == 2
    with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
        queue_store.check_attempt(conn, run_id, 1)
    assert refused.value.orig.sqlstate == "SDB01"
    assert f"run {run_id} attempt 1 was superseded by attempt 2" in str(refused.value)


def test_a_superseded_child_exits_at_its_first_transaction(mini, pg):
    """The trainer's fence: a real process whose attempt is stale exits 75, writing nothing."""
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    job_id = pg.execute("SELECT job_id FROM signdb.runs WHERE id = %s", [run_id]).fetchone()[0]
    _claim(mini, run_id, job_id)
    with transaction(engine) as session:
        new_job = queue_store.requeue(session, run_id, 1, reason="test", lost=0)
    _claim(mini, run_id, new_job, pid=5151)
    script = (
        "import os, sys\n"
        "from signdb.queue.child import train_run\n"
        f"train_run(sys.argv[1], {run_id}, 1, os.getpid())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, mini], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 75, done.stderr
    assert "attempt 1 was superseded by attempt 2" in done.stderr
    status, pid = pg.execute(
        "SELECT status, pid FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert (status, pid) == ("queued", None)  # untouched by the stale attempt


def test_the_reaper_queues_a_lost_run_once_then_fails_it(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    for lost in (0, 1):
        job_id = _fetch_as_dead_worker(pg, seconds_ago=30)
        attempt = _claim(mini, run_id, job_id, pid=100 + lost)
        pg.execute(  # the trainer started, then went silent with its worker
            "UPDATE signdb.runs SET status = 'running', heartbeat_at = now() - interval '30 s' "
            "WHERE id = %s",
            [run_id],
        )
        assert reap(engine, grace_seconds=5).actions == [
            (
                run_id,
                "queued again to resume from its checkpoint"
                if lost == 0
                else "failed (lost twice)",
            )
        ]
        assert pg.execute(
            "SELECT status::text FROM procrastinate.procrastinate_jobs WHERE id = %s", [job_id]
        ).fetchone() == ("failed",)
        status, error, new_job = pg.execute(
            "SELECT status, error, job_id FROM signdb.runs WHERE id = %s", [run_id]
        ).fetchone()
        if lost == 0:
            assert status == "queued" and new_job != job_id
            assert f"attempt {attempt} lost its worker" in error
            args = pg.execute(
                "SELECT args FROM procrastinate.procrastinate_jobs WHERE id = %s", [new_job]
            ).fetchone()[0]
            assert args == {"run_id": run_id, "lost": 1}
        else:
            assert status == "failed" and "lost twice" in error and f"--resume {run_id}" in error
    assert reap(engine, grace_seconds=5).actions == []


def test_the_reaper_spares_live_workers_and_live_runs(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    job_id = _fetch_as_dead_worker(pg, seconds_ago=0)  # a worker that beats
    _claim(mini, run_id, job_id)
    pg.execute(
        "UPDATE signdb.runs SET status = 'running', heartbeat_at = now() WHERE id = %s", [run_id]
    )
    assert reap(engine, grace_seconds=5).actions == []
    # Its worker silent, but the trainer still beating (a paused worker): spared too.
    pg.execute(
        "UPDATE procrastinate.procrastinate_workers SET last_heartbeat = now() - interval '1 min'"
    )
    assert reap(engine, grace_seconds=5).actions == []
    assert pg.execute("SELECT status FROM signdb.runs WHERE id = %s", [run_id]).fetchone() == (
        "running",
    )


def test_db_check_covers_the_queue_schema(engine, pg):
    assert migrate.check(engine).ok
    pg.execute("DROP INDEX procrastinate.procrastinate_jobs_priority_idx_v1")
    drift = migrate.check(engine).drift
    assert any("missing index" in d and "procrastinate_jobs_priority_idx_v1" in d for d in drift), (
        drift
    )


def test_downgrade_turns_cancelled_runs_into_interrupted_and_drops_the_queue(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    cancel_run(engine, run_id)
    migrate.downgrade(engine, "0014")
    assert pg.execute(
        "SELECT status, error FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone() == (
        "interrupted",
        "cancelled before it started",
    )
    assert not pg.execute("SELECT FROM pg_namespace WHERE nspname = 'procrastinate'").fetchall()
    migrate.upgrade(engine)
    assert migrate.check(engine).ok
    assert submit(engine, _spec(dataset="mini", iterations=5)) > run_id


def test_the_reaper_queues_a_run_whose_job_was_fetched_but_never_claimed(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    job_id = _fetch_as_dead_worker(pg, seconds_ago=0)  # a live worker that never heard back
    assert reap(engine, grace_seconds=5).actions == []
    pg.execute(
        "UPDATE procrastinate.procrastinate_events SET at = now() - interval '30 s' "
        "WHERE job_id = %s AND type = 'started'",
        [job_id],
    )
    assert reap(engine, grace_seconds=5).actions == [(run_id, "queued again (never started)")]
    status, new_job, attempt = pg.execute(
        "SELECT status, job_id, attempt FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert (status, attempt) == ("queued", 0) and new_job != job_id
    args = pg.execute(
        "SELECT args FROM procrastinate.procrastinate_jobs WHERE id = %s", [new_job]
    ).fetchone()[0]
    assert args["lost"] == 0  # nothing was lost: no retry used up


def test_the_reaper_gives_a_job_back_to_a_queued_run_whose_job_ended(mini, pg):
    engine = get_engine(mini)
    run_id = submit(engine, _spec(dataset="mini", iterations=5))
    job_id = _fetch_as_dead_worker(pg, seconds_ago=0)
    pg.execute("SET search_path TO procrastinate")
    pg.execute("SELECT procrastinate_finish_job_v1(%s, 'aborted', false)", [job_id])
    pg.execute("RESET search_path")
    assert reap(engine, grace_seconds=5).actions == [
        (run_id, "queued again (its job had ended without it)")
    ]
    new_job = pg.execute("SELECT job_id FROM signdb.runs WHERE id = %s", [run_id]).fetchone()[0]
    status = pg.execute(
        "SELECT status::text FROM procrastinate.procrastinate_jobs WHERE id = %s", [new_job]
    ).fetchone()
    assert new_job != job_id and status == ("todo",)
