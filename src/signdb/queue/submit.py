"""Submitting, cancelling and listing queued runs: what ``signdb submit`` and the server call.

Each function takes an :class:`~sqlalchemy.Engine` and does its SQL through
:mod:`signdb.store.queue`, within what ``signdb_writer`` may do (the server's
editor requests run as that role).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.store import queue as queue_store
from signdb.store import sweeps as sweep_store
from signdb.training import TrainSpec, prepare_model, start_spec_run

DEFAULT_QUEUE = "default"


def submit(
    engine: Engine, spec: TrainSpec, *, queue: str = DEFAULT_QUEUE, priority: int = 0
) -> int:
    """Validate ``spec`` as ``signdb train`` does, create its run (status queued) and
    enqueue it, in one transaction; returns the run id. Bad input queues nothing.

    >>> from signdb.training import TrainSpec
    >>> run_id = submit(db.engine, TrainSpec("shapes", classes=["circle", "square"]))
    >>> [(r["status"], r["queue"]) for r in queue_overview(db.engine) if r["run_id"] == run_id]
    [('queued', 'default')]
    """
    queue = queue_store.check_queue_name(queue)
    priority = queue_store.check_priority(priority)
    model = prepare_model(engine, _validation_spec(spec))

    def enqueue(session: Any, run_id: int) -> None:
        queue_store.enqueue_run(session, run_id, queue=queue, priority=priority)

    run = start_spec_run(engine, spec, model, status="queued", on_create=enqueue)
    return run.id


def _validation_spec(spec: TrainSpec) -> TrainSpec:
    """The spec to check here: a torch run's device is the worker's to find (a GPU queue's
    runs are submitted from machines without one), so it is checked on the CPU."""
    if spec.engine == "torch" and spec.trainer.device != "cpu":
        return replace(spec, trainer=replace(spec.trainer, device="cpu"))
    return spec


def cancel_run(engine: Engine, run_id: int) -> dict[str, Any]:
    """Cancel a submitted run: a queued one never starts; a running one is asked to stop at
    its next step (it checkpoints and ends ``cancelled``).

    Returns ``{"run_id", "status", "cancel_requested"}``: the run's status now, and
    whether a running run was asked to stop.

    >>> from signdb.training import TrainSpec
    >>> run_id = submit(db.engine, TrainSpec("shapes", classes=["circle", "square"]))
    >>> cancel_run(db.engine, run_id)["status"]
    'cancelled'
    """
    with transaction(engine, f"cancelling run {run_id}") as session:
        run = queue_store.lock_run(session, run_id)
        if run.job_id is None:
            raise InvalidArgument(
                f"run {run_id} was not submitted to the queue (status {run.status}); stop a "
                "`signdb train` with Ctrl-C or SIGTERM"
            )
        if run.status not in queue_store.LIVE:
            raise InvalidArgument(f"run {run_id} already {run.status}; there is nothing to cancel")
        if queue_store.cancel_job(session, run.job_id, abort=False):
            queue_store.end_run(session, run_id, None, "cancelled", "cancelled before it started")
            return {"run_id": run_id, "status": "cancelled", "cancel_requested": False}
        queue_store.cancel_job(session, run.job_id, abort=True)
    return {"run_id": run_id, "status": run.status, "cancel_requested": True}


def queue_overview(engine: Engine) -> list[dict[str, Any]]:
    """Queued and running submitted runs with queue, priority, worker host and pid, attempt and
    age (``age_seconds`` since submission); running first, then by priority.

    >>> from signdb.training import TrainSpec
    >>> run_id = submit(db.engine, TrainSpec("shapes", classes=["circle", "square"]), priority=5)
    >>> [(r["status"], r["priority"]) for r in queue_overview(db.engine) if r["run_id"] == run_id]
    [('queued', 5)]
    """
    with transaction(engine, "reading the queue") as session:
        return queue_store.overview(session)


def submit_sweep(
    engine: Engine, name: str, workers: int, *, queue: str = DEFAULT_QUEUE, priority: int = 0
) -> list[int]:
    """Enqueue ``workers`` jobs that each run ``signdb sweep work NAME``; returns their job ids."""
    queue = queue_store.check_queue_name(queue)
    priority = queue_store.check_priority(priority)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1000:
        raise InvalidArgument(f"the number of sweep workers must be 1 to 1000, got {workers!r}")
    with transaction(engine, f"submitting workers of sweep {name!r}") as session:
        sweep_store.get_sweep(session, name)  # a clear error for an unknown sweep
        return [
            queue_store.defer_job(
                session,
                task=queue_store.SWEEP_TASK,
                queue=queue,
                priority=priority,
                args={"sweep": name, "lost": 0},
            )
            for _ in range(workers)
        ]
