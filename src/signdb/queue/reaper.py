"""The stalled-job task procrastinate leaves to its users (its issues #740 and #1408).

A worker killed with SIGKILL, or whose machine is lost, leaves its jobs in
``doing`` forever. Every signdb worker looks for such jobs every few seconds,
from its own event loop rather than as a queued periodic job (a reaper job can
itself be stranded by a dead worker, procrastinate #1408). A job is stalled
when its worker sent no heartbeat for the grace period, and, for a run, when
the run itself stopped beating too (see :func:`signdb.store.queue.stalled_jobs`).

What happens to a stalled job's run, in one transaction with the run locked:

* it finished meanwhile (succeeded, failed, cancelled): the job is closed to match;
* a cancel was asked for: the run ends ``cancelled``;
* it never started (claimed, then the worker died): it is queued again;
* it was training: it is queued again once, to resume from its last checkpoint
  on another worker (the attempt number rises when that worker claims it, so
  the lost attempt can write nothing more); lost a second time, it fails, saying why.

A queued run whose job ended without it (a worker stopped between the two
writes) gets a new job. A sweep's worker job lost with its worker is queued again once; the trial it
was running is failed and retried by the sweep's own heartbeat rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from signdb.db.engine import transaction
from signdb.results import Result
from signdb.store import queue as queue_store
from signdb.store.queue import MAX_LOSSES, RUN_TASK, StalledJob


@dataclass
class Reaped(Result):
    """What one look for stalled jobs did: ``(run id or sweep name, what happened)`` pairs."""

    actions: list[tuple[Any, str]]


def reap(engine: Engine, grace_seconds: float) -> Reaped:
    """Close the jobs of workers silent for ``grace_seconds`` and queue their runs again."""
    with transaction(engine, "re-queueing the runs of lost workers") as session:
        queue_store.wait_briefly_for_locks(session)
        actions = [
            _reap_one(session, job, grace_seconds)
            for job in queue_store.stalled_jobs(session, grace_seconds)
        ]
        for run_id, args in queue_store.orphaned_runs(session):
            run = queue_store.lock_run(session, run_id)
            queue_store.enqueue_run(
                session, run_id, queue=run.queue or "default", priority=run.priority or 0,
                lost=int(args.get("lost", 0)),
            )  # fmt: skip
            actions.append((run_id, "queued again (its job had ended without it)"))
    return Reaped([a for a in actions if a is not None])


def _reap_one(session: Session, job: StalledJob, grace: float) -> tuple[Any, str] | None:
    lost = int(job.args.get("lost", 0))
    if job.task != RUN_TASK:
        queue_store.finish_job(session, job.job_id, "failed")
        name = job.args.get("sweep")
        if lost >= MAX_LOSSES:
            return name, "sweep worker lost again; not queued a third time"
        queue_store.defer_job(
            session,
            task=job.task,
            queue=job.queue,
            priority=job.priority,
            args={**job.args, "lost": lost + 1},
        )
        return name, "sweep worker lost; queued again"
    run_id = queue_store.run_of_job(session, job.job_id)
    if run_id is None:  # the run moved on to another job already
        queue_store.finish_job(session, job.job_id, "failed")
        return None
    run = queue_store.lock_run(session, run_id)
    if run.status not in queue_store.LIVE:
        queue_store.finish_job(
            session, job.job_id, "succeeded" if run.status == "succeeded" else "failed"
        )
        return run_id, f"already {run.status}; job closed"
    queue_store.finish_job(session, job.job_id, "aborted" if job.abort_requested else "failed")
    where = f"{run.worker_host or '?'} pid {run.worker_pid or '?'}"
    if job.abort_requested:
        queue_store.end_run(
            session, run_id, None, "cancelled", f"cancelled; its worker ({where}) was lost"
        )
        return run_id, "cancelled"
    if run.status == "queued":  # claimed, but training never began
        reason = (
            f"its worker ({where}) was lost before the run began; queued again"
            if run.worker_host
            else "its job was fetched but never claimed (a reply lost with a connection); queued again"
        )
        queue_store.requeue(session, run_id, run.attempt, reason=reason, lost=lost)
        return run_id, "queued again (never started)"
    silent = f"no heartbeat for {grace:g} s"
    if lost >= MAX_LOSSES:
        error = (
            f"its worker was lost twice (last: {where}, {silent}); the last checkpoint is kept: "
            f"`signdb train --resume {run_id}` goes on from it"
        )
        queue_store.end_run(session, run_id, None, "failed", error)
        return run_id, "failed (lost twice)"
    reason = f"attempt {run.attempt} lost its worker ({where}, {silent}); queued again to resume"
    queue_store.requeue(session, run_id, run.attempt, reason=reason, lost=lost + 1)
    return run_id, "queued again to resume from its checkpoint"
