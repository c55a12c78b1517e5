"""The run queue's SQL: procrastinate's jobs (schema ``procrastinate``) beside ``signdb.runs``.

A submitted run is one row of ``runs`` (its queue, priority, attempt, worker)
and, per attempt, one procrastinate job whose args name the run. Everything
that changes both happens in one transaction here, with the run row locked
``FOR UPDATE``: a crash never leaves a queued run without a job, nor a job
whose run moved on. No commits here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from signdb.db.queue_schema import SEARCH_PATH
from signdb.errors import InvalidArgument, NotFound

#: procrastinate's task names (``job.task_name``) of signdb's two kinds of job.
RUN_TASK = "signdb.run"
SWEEP_TASK = "signdb.sweep_work"
#: A run whose worker was lost this many times is failed rather than queued again.
MAX_LOSSES = 1
LIVE = ("queued", "running", "interrupted")


def _queue_path(session: Session) -> None:
    """procrastinate's functions find their tables through the caller's search path."""
    session.execute(text(f"SET LOCAL search_path TO {SEARCH_PATH}"))


def defer_job(
    session: Session,
    *,
    task: str,
    queue: str,
    priority: int,
    args: dict[str, Any],
    queueing_lock: str | None = None,
) -> int:
    """Insert one procrastinate job (``procrastinate_defer_jobs_v1``); its NOTIFY goes at commit."""
    _queue_path(session)
    return session.execute(
        text(
            "SELECT unnest(procrastinate.procrastinate_defer_jobs_v1(ARRAY[ROW("
            "CAST(:queue AS varchar), CAST(:task AS varchar), CAST(:priority AS integer), "
            "CAST(NULL AS text), CAST(:qlock AS text), CAST(:args AS jsonb), "
            "CAST(NULL AS timestamptz))::procrastinate.procrastinate_job_to_defer_v1]))"
        ),
        {
            "queue": queue,
            "task": task,
            "priority": priority,
            "qlock": queueing_lock,
            "args": json.dumps(args),
        },
    ).scalar_one()


def run_lock(run_id: int) -> str:
    """The queueing lock of a run's jobs: never two waiting jobs for one run."""
    return f"signdb-run-{run_id}"


def enqueue_run(session: Session, run_id: int, *, queue: str, priority: int, lost: int = 0) -> int:
    """A job for run ``run_id`` (status queued), recorded on the run; returns the job id."""
    job_id = defer_job(
        session,
        task=RUN_TASK,
        queue=queue,
        priority=priority,
        args={"run_id": run_id, "lost": lost},
        queueing_lock=run_lock(run_id),
    )
    session.execute(
        text(
            "UPDATE signdb.runs SET status = 'queued', queue = :q, priority = :p, job_id = :j, "
            "worker_host = NULL, worker_pid = NULL, heartbeat_at = NULL, finished_at = NULL "
            "WHERE id = :r"
        ),
        {"q": queue, "p": priority, "j": job_id, "r": run_id},
    )
    return job_id


@dataclass(frozen=True)
class QueuedRun:
    id: int
    status: str
    queue: str | None
    priority: int | None
    job_id: int | None
    attempt: int
    worker_host: str | None
    worker_pid: int | None


def lock_run(session: Session, run_id: int) -> QueuedRun:
    """The run's queue columns, its row locked FOR UPDATE (waits for a fenced write)."""
    row = session.execute(
        text(
            "SELECT id, status, queue, priority, job_id, attempt, worker_host, worker_pid "
            "FROM signdb.runs WHERE id = :r FOR UPDATE"
        ),
        {"r": run_id},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no run with id {run_id}; `signdb runs list` shows the runs")
    return QueuedRun(**row._mapping)


def claim_run(session: Session, run_id: int, job_id: int, host: str, pid: int) -> int | None:
    """Take the run for job ``job_id``: the new attempt number, or None when the job is stale.

    A job is stale when the run points to another job (it was cancelled or queued
    again meanwhile) or is no longer queued. Claiming twice (a retry after a lost
    reply) returns the same attempt.
    """
    run = lock_run(session, run_id)
    if run.job_id != job_id or run.status != "queued":
        return None
    if run.worker_host == host and run.worker_pid == pid and run.attempt > 0:
        return run.attempt  # our own claim, committed before the connection dropped
    session.execute(
        text(
            "UPDATE signdb.runs SET attempt = attempt + 1, worker_host = :h, worker_pid = :p, "
            "heartbeat_at = now(), error = NULL WHERE id = :r"
        ),
        {"h": host, "p": pid, "r": run_id},
    )
    return run.attempt + 1


def check_attempt(conn: Connection | Session, run_id: int, attempt: int) -> None:
    """Raise (SQLSTATE SDB01) unless ``attempt`` is still the run's current attempt."""
    conn.execute(text("SELECT signdb.check_attempt(:r, :a)"), {"r": run_id, "a": attempt})


def requeue(session: Session, run_id: int, attempt: int, *, reason: str, lost: int) -> int | None:
    """Queue attempt ``attempt`` of the run again (a new job); None if it was superseded."""
    run = lock_run(session, run_id)
    if run.attempt != attempt or run.status not in LIVE:
        return None
    if run.job_id is not None:
        cancel_job(session, run.job_id, abort=False)  # a job still waiting makes way (no-op if not)
    job_id = enqueue_run(
        session, run_id, queue=run.queue or "default", priority=run.priority or 0, lost=lost
    )
    _set_error(session, run_id, reason)
    return job_id


def end_run(session: Session, run_id: int, attempt: int | None, status: str, error: str) -> bool:
    """Mark the run ``status`` (cancelled or failed) with ``error``, unless it was superseded."""
    run = lock_run(session, run_id)
    if (attempt is not None and run.attempt != attempt) or run.status not in LIVE:
        return False
    session.execute(
        text(
            "UPDATE signdb.runs SET status = :s, error = :e, finished_at = now(), "
            "heartbeat_at = now() WHERE id = :r"
        ),
        {"s": status, "e": error, "r": run_id},
    )
    return True


def _set_error(session: Session, run_id: int, error: str) -> None:
    session.execute(
        text("UPDATE signdb.runs SET error = :e WHERE id = :r"), {"e": error, "r": run_id}
    )


def run_status(session: Session, run_id: int) -> tuple[str, int, str | None]:
    """(stored status, attempt, error) of the run."""
    row = session.execute(
        text("SELECT status, attempt, error FROM signdb.runs WHERE id = :r"), {"r": run_id}
    ).one()
    return row.status, row.attempt, row.error


def cancel_job(session: Session, job_id: int, *, abort: bool) -> bool:
    """procrastinate's cancel: a waiting job is cancelled; with ``abort`` a running one is
    asked to stop. True when the job was waiting (now cancelled) or asked to abort."""
    _queue_path(session)
    found = session.execute(
        text("SELECT procrastinate.procrastinate_cancel_job_v1(:j, :a, false)"),
        {"j": job_id, "a": abort},
    ).scalar_one()
    return found is not None


def job_status(session: Session, job_id: int) -> str | None:
    return session.execute(
        text("SELECT status::text FROM procrastinate.procrastinate_jobs WHERE id = :j"),
        {"j": job_id},
    ).scalar_one_or_none()


def check_queue_name(queue: object) -> str:
    """Queues are free text, within what a LISTEN channel holds (``procrastinate_queue_v1#``
    plus the name must fit PostgreSQL's 63-byte identifiers)."""
    if not isinstance(queue, str) or not queue.strip() or "\x00" in queue:
        raise InvalidArgument(f"--queue takes a non-empty name, got {queue!r}")
    if len(queue.encode()) > 40:
        raise InvalidArgument(
            f"queue name {queue!r} is {len(queue.encode())} bytes; use at most 40 "
            "(it becomes part of a PostgreSQL LISTEN channel)"
        )
    return queue


def check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"--priority takes an integer, got {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise InvalidArgument(f"--priority must fit 32 bits, got {priority}")
    return priority


# -- what the queue holds --------------------------------------------------------------
def overview(session: Session) -> list[dict[str, Any]]:
    """Queued and running submitted runs: running first, then by priority and age."""
    rows = session.execute(
        text(
            "SELECT r.id AS run_id, r.name, d.name AS dataset, r.model, "
            "signdb.effective_status(r.status, r.heartbeat_at) AS status, r.queue, r.priority, "
            "r.worker_host, r.worker_pid, r.pid AS trainer_pid, r.attempt, r.job_id, "
            "r.steps_done, r.total_steps, r.created_at AS submitted_at, "
            "extract(epoch FROM now() - r.created_at)::double precision AS age_seconds "
            "FROM signdb.runs r JOIN signdb.datasets d ON d.id = r.dataset_id "
            "WHERE r.job_id IS NOT NULL AND r.status IN ('queued', 'running') "
            "ORDER BY r.status = 'running' DESC, r.priority DESC, r.id"
        )
    )
    return [dict(row._mapping) for row in rows]


def queues_used(session: Session, names: list[str]) -> set[str]:
    """Those of ``names`` that some job was ever sent to."""
    rows = session.execute(
        text(
            "SELECT DISTINCT queue_name FROM procrastinate.procrastinate_jobs "
            "WHERE queue_name = ANY(CAST(:n AS varchar[])) "
            "UNION SELECT DISTINCT queue FROM signdb.runs WHERE queue = ANY(CAST(:n AS text[]))"
        ),
        {"n": names},
    )
    return set(rows.scalars())


def known_queues(session: Session) -> list[str]:
    rows = session.execute(
        text("SELECT DISTINCT queue_name FROM procrastinate.procrastinate_jobs ORDER BY 1")
    )
    return list(rows.scalars())


# -- dead workers ----------------------------------------------------------------------
@dataclass(frozen=True)
class StalledJob:
    job_id: int
    task: str
    args: dict[str, Any]
    queue: str
    priority: int
    abort_requested: bool
    worker_id: int | None


def wait_briefly_for_locks(session: Session) -> None:
    """A reaper waits 2 s at most for a run row: one held by a paused trainer's open
    transaction is tried again at the next look, not waited on for 30 s."""
    session.execute(text("SET LOCAL lock_timeout = '2s'"))


def stalled_jobs(session: Session, grace_seconds: float) -> list[StalledJob]:
    """Jobs in ``doing`` whose worker sent no heartbeat for ``grace_seconds`` (or is gone),
    locked for this transaction (SKIP LOCKED: another reaper has the rest).

    A run job is spared while its run still beats: a worker that is merely slow to
    beat (paused, busy) with a live trainer is not lost. A job fetched longer than
    the grace ago whose run was never claimed is stalled whatever its worker does
    (a fetch whose reply was lost to a dropped connection).
    """
    rows = session.execute(
        text(
            "SELECT j.id AS job_id, j.task_name AS task, j.args, j.queue_name AS queue, "
            "j.priority, j.abort_requested, j.worker_id "
            "FROM procrastinate.procrastinate_jobs j "
            "LEFT JOIN procrastinate.procrastinate_workers w ON w.id = j.worker_id "
            "LEFT JOIN signdb.runs r ON j.task_name = :run_task AND r.job_id = j.id "
            "WHERE j.status = 'doing' AND j.task_name IN (:run_task, :sweep_task) AND (("
            "(w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => :g)) "
            "AND NOT coalesce(r.status = 'running' "
            "AND r.heartbeat_at >= now() - make_interval(secs => :g), false)"
            ") OR ("  # fetched, never claimed: the fetch's reply was lost
            "r.status = 'queued' AND r.heartbeat_at IS NULL AND EXISTS ("
            "SELECT FROM procrastinate.procrastinate_events e WHERE e.job_id = j.id "
            "AND e.type = 'started' AND e.at < now() - make_interval(secs => :g)))) "
            "FOR UPDATE OF j SKIP LOCKED"
        ),
        {"run_task": RUN_TASK, "sweep_task": SWEEP_TASK, "g": grace_seconds},
    )
    return [StalledJob(**row._mapping) for row in rows]


def finish_job(session: Session, job_id: int, status: str) -> None:
    """procrastinate's finish (succeeded, failed or aborted) of a job in ``doing``."""
    _queue_path(session)
    session.execute(
        text(
            "SELECT procrastinate.procrastinate_finish_job_v1(:j, "
            "CAST(:s AS procrastinate.procrastinate_job_status), false)"
        ),
        {"j": job_id, "s": status},
    )


def run_of_job(session: Session, job_id: int) -> int | None:
    """The run whose current job is ``job_id`` (None: the run moved on to another job)."""
    return session.execute(
        text("SELECT id FROM signdb.runs WHERE job_id = :j"), {"j": job_id}
    ).scalar_one_or_none()


def orphaned_runs(session: Session) -> list[tuple[int, dict[str, Any]]]:
    """Queued runs whose job already ended (a worker stopped between closing the job and
    recording the run): ``(run id, the job's args)``, rows locked (SKIP LOCKED)."""
    rows = session.execute(
        text(
            "SELECT r.id, j.args FROM signdb.runs r "
            "JOIN procrastinate.procrastinate_jobs j ON j.id = r.job_id "
            "WHERE r.status = 'queued' "
            "AND j.status IN ('succeeded', 'failed', 'aborted', 'cancelled') "
            "FOR UPDATE OF r SKIP LOCKED"
        )
    )
    return [(run_id, args) for run_id, args in rows]
