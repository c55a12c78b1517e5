"""``signdb worker``: a procrastinate worker whose jobs train queued runs in child processes.

The worker claims a job (procrastinate: LISTEN/NOTIFY, ``FOR UPDATE SKIP
LOCKED``, priority then age), claims the job's run (a new attempt number, this
host and pid), and trains it in a child process (:mod:`signdb.queue.child`)
while its event loop keeps the heartbeat, listens for cancels and reaps the
jobs of dead workers (:mod:`signdb.queue.reaper`). When the child exits, the
run row says what happened and the worker closes the job to match:

* succeeded or failed: the job ends the same way;
* cancelled by ``signdb runs cancel`` (an abort request): the child got SIGTERM,
  checkpointed, and the run ends ``cancelled``;
* the worker was asked to stop (SIGTERM/SIGINT): the child checkpoints and the
  run is queued again, for another worker to resume;
* the child died without a word (killed, out of memory): like a lost worker,
  the run is queued again once, then failed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from procrastinate import App, JobContext
from procrastinate.job_context import AbortReason
from procrastinate.worker import Worker
from sqlalchemy import Engine

from signdb.db.engine import get_engine, retrying, transaction
from signdb.db.queue_schema import queue_conninfo
from signdb.errors import InvalidArgument, SignDBError
from signdb.queue import child
from signdb.queue.connector import ResilientConnector
from signdb.queue.reaper import reap
from signdb.store import queue as queue_store
from signdb.store.queue import MAX_LOSSES, RUN_TASK, SWEEP_TASK
from signdb.tracking.logger import default_retry_seconds

logger = logging.getLogger("signdb.queue")

HEARTBEAT_ENV = "SIGNDB_WORKER_HEARTBEAT_SECONDS"
GRACE_ENV = "SIGNDB_WORKER_GRACE_SECONDS"
HEARTBEAT_SECONDS = 10.0
GRACE_SECONDS = 60.0
#: How often an idle worker looks for jobs whose NOTIFY it missed (a fallback only).
POLL_SECONDS = 5.0

Log = Callable[[str], None]
CANCELLED = "cancelled"
REQUEUED = "stopped; queued again"


class RunFailed(SignDBError):
    """A queued run ended ``failed``: its job fails too (the run row has the reason)."""


def _seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise InvalidArgument(f"{name} must be > 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    """What ``signdb worker`` runs with. ``grace_seconds`` without a heartbeat makes a
    worker lost; it must be well above ``heartbeat_seconds`` (three beats at least)."""

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 1
    heartbeat_seconds: float = field(
        default_factory=lambda: _seconds_from_env(HEARTBEAT_ENV, HEARTBEAT_SECONDS)
    )
    grace_seconds: float = field(
        default_factory=lambda: _seconds_from_env(GRACE_ENV, GRACE_SECONDS)
    )
    until_empty: bool = False  # stop once no job is left (batch use, benchmarks)

    def __post_init__(self) -> None:
        if not self.queues:
            raise InvalidArgument("a worker needs at least one --queue")
        for queue in self.queues:
            queue_store.check_queue_name(queue)
        if isinstance(self.concurrency, bool) or not 1 <= self.concurrency <= 64:
            raise InvalidArgument(f"--concurrency must be 1 to 64, got {self.concurrency}")
        if self.grace_seconds < 3 * self.heartbeat_seconds:
            raise InvalidArgument(
                f"the grace ({self.grace_seconds:g} s) must be at least three heartbeats "
                f"({self.heartbeat_seconds:g} s each): set {GRACE_ENV} higher or "
                f"{HEARTBEAT_ENV} lower"
            )


@dataclass
class _State:
    """What the tasks share: set up once per worker process."""

    url: str
    engine: Engine
    settings: WorkerSettings
    log: Log
    retry_seconds: float
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    mp: Any = None

    def write(self, doing: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(session)`` in one transaction, retried while the server is away."""

        def attempt() -> Any:
            with transaction(self.engine, doing) as session:
                return fn(session)

        return retrying(attempt, seconds=self.retry_seconds)


def build_app(state: _State) -> App:
    """The procrastinate app: its connector on the queue's schema, signdb's two tasks."""
    connector = ResilientConnector(
        retry_seconds=state.retry_seconds,
        conninfo=queue_conninfo(state.url),
        min_size=1,
        max_size=state.settings.concurrency + 3,
        timeout=max(state.retry_seconds, 5.0),
        kwargs={"application_name": f"signdb-worker[{state.pid}]"},
    )
    app = App(connector=connector)

    @app.task(name=RUN_TASK, pass_context=True)
    async def run(context: JobContext, run_id: int, lost: int = 0) -> dict[str, Any]:
        return await _run_job(state, context, run_id, lost)

    @app.task(name=SWEEP_TASK, pass_context=True)
    async def sweep(context: JobContext, sweep: str, lost: int = 0) -> dict[str, Any]:
        return await _sweep_job(state, context, sweep, lost)

    return app


async def _run_job(state: _State, context: JobContext, run_id: int, lost: int) -> dict[str, Any]:
    job_id = context.job.id
    claiming = asyncio.ensure_future(
        asyncio.to_thread(
            state.write,
            f"claiming run {run_id}",
            lambda s: queue_store.claim_run(s, run_id, job_id, state.host, state.pid),
        )
    )
    stop = None
    try:
        attempt = await asyncio.shield(claiming)
    except asyncio.CancelledError:  # cancelled or stopping mid-claim: the claim still counts
        stop = context.abort_reason() or AbortReason.SHUTDOWN
        attempt = await claiming
    if attempt is None:
        state.log(f"run {run_id}: job {job_id} is stale (the run was cancelled or moved on)")
        return {"run_id": run_id, "status": "skipped"}
    started = time.monotonic()
    exitcode = None
    if stop is None:
        state.log(
            f"run {run_id}: attempt {attempt} starts (job {job_id}, queue {context.job.queue})"
        )
        process = state.mp.Process(
            target=child.train_run,
            args=(state.url, run_id, attempt, state.pid),
            name=f"signdb-run-{run_id}",
        )
        stop = await _supervise(process, context)
        exitcode = process.exitcode
    # Shielded: a second cancel must not leave the run without its ending.
    outcome = await asyncio.shield(
        asyncio.to_thread(
            state.write,
            f"recording how run {run_id} ended",
            lambda s: _conclude(s, state, run_id, attempt, lost, exitcode, stop),
        )
    )
    state.log(f"run {run_id}: attempt {attempt} {outcome} after {time.monotonic() - started:.1f} s")
    if outcome in (CANCELLED, REQUEUED):
        raise asyncio.CancelledError  # procrastinate records the job as aborted
    if outcome.startswith("failed"):
        raise RunFailed(f"run {run_id} {outcome}")
    return {"run_id": run_id, "attempt": attempt, "outcome": outcome}


async def _sweep_job(state: _State, context: JobContext, sweep: str, lost: int) -> dict[str, Any]:
    state.log(f"sweep {sweep}: a sweep worker starts (job {context.job.id})")
    process = state.mp.Process(
        target=child.sweep_work, args=(state.url, sweep, state.pid), name=f"signdb-sweep-{sweep}"
    )
    stop = await _supervise(process, context)
    state.log(f"sweep {sweep}: the sweep worker exited with status {process.exitcode}")
    if stop == AbortReason.SHUTDOWN:  # its trial went back to the sweep; the job to the queue
        job = context.job
        await asyncio.shield(
            asyncio.to_thread(
                state.write,
                f"queueing a worker of sweep {sweep!r} again",
                lambda s: queue_store.defer_job(
                    s, task=SWEEP_TASK, queue=job.queue, priority=job.priority,
                    args={"sweep": sweep, "lost": lost},
                ),
            )
        )  # fmt: skip
    if stop is not None:
        raise asyncio.CancelledError
    return {"sweep": sweep, "exitcode": process.exitcode}


async def _supervise(process: Any, context: JobContext) -> AbortReason | None:
    """Start ``process`` and wait for it; a cancel (abort or shutdown) sends it SIGTERM and
    waits for it to checkpoint and exit. Returns why it was stopped, or None."""
    process.start()  # a request to the fork server: milliseconds, and nothing to cancel
    stop = None
    while True:
        try:
            await _exited(process)
            return stop
        except asyncio.CancelledError:
            if stop is None:
                stop = context.abort_reason() or AbortReason.SHUTDOWN
                if process.pid is not None and process.exitcode is None:
                    os.kill(process.pid, signal.SIGTERM)


async def _exited(process: Any) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(process.sentinel, ready)
    try:
        await done
    finally:
        loop.remove_reader(process.sentinel)
    process.join()


def _conclude(
    session: Any,
    state: _State,
    run_id: int,
    attempt: int,
    lost: int,
    exitcode: int | None,
    stop: AbortReason | None,
) -> str:
    """Read how the child left the run and finish the story: one transaction."""
    status, current, error = queue_store.run_status(session, run_id)
    if current != attempt or exitcode == child.EXIT_SUPERSEDED:
        return f"was superseded by attempt {current}; it wrote nothing more"
    if status in ("succeeded", "failed", "cancelled"):
        return status if status != "failed" else f"failed: {error}"
    where = f"{state.host} pid {state.pid}"
    if stop == AbortReason.USER_REQUEST:
        queue_store.end_run(
            session, run_id, attempt, "cancelled",
            f"cancelled while running; its last checkpoint is kept (`signdb train --resume {run_id}`)",
        )  # fmt: skip
        return CANCELLED
    if stop == AbortReason.SHUTDOWN or status == "interrupted":
        reason = f"its worker ({where}) stopped; queued again to resume from its checkpoint"
        queue_store.requeue(session, run_id, attempt, reason=reason, lost=lost)
        return REQUEUED
    if status == "queued":
        error = f"the worker ({where}) could not start it (exit status {exitcode})"
        queue_store.end_run(session, run_id, attempt, "failed", error)
        return f"failed: {error}"
    died = f"its training process died (exit status {exitcode}) on {where}"
    if lost >= MAX_LOSSES:
        error = f"{died}, and it was lost once before; the last checkpoint is kept"
        queue_store.end_run(session, run_id, attempt, "failed", error)
        return f"failed: {error}"
    queue_store.requeue(session, run_id, attempt, reason=f"{died}; queued again", lost=lost + 1)
    return "died; queued again"


def run_worker(url: str, settings: WorkerSettings, log: Log) -> None:
    """Run a worker until SIGTERM/SIGINT (or, ``until_empty``, until no job is left)."""
    engine = get_engine(url)
    state = _State(url, engine, settings, log, default_retry_seconds())
    _warn_unknown_queues(state)
    ctx = multiprocessing.get_context("forkserver")
    # The fork server imports the trainer once; each run's child then starts in
    # milliseconds, not in the 0.7 s of imports a fresh interpreter spends.
    ctx.set_forkserver_preload(["signdb.queue.child"])
    state.mp = ctx
    asyncio.run(_serve(state))


def _warn_unknown_queues(state: _State) -> None:
    names = list(state.settings.queues)
    with transaction(state.engine, "reading the queues") as session:
        used = queue_store.queues_used(session, names)
        known = queue_store.known_queues(session)
    for name in names:
        if name not in used:
            seen = ", ".join(known) if known else "none yet"
            state.log(
                f"warning: no run has ever been submitted to queue {name!r} (queues seen: "
                f"{seen}); check the name, or submit with --queue {name}"
            )


async def _serve(state: _State) -> None:
    settings = state.settings
    app = build_app(state)
    async with app.open_async():
        worker = Worker(
            app,
            queues=list(settings.queues),
            name=f"signdb@{state.host}",
            concurrency=settings.concurrency,
            wait=not settings.until_empty,
            fetch_job_polling_interval=POLL_SECONDS,
            abort_job_polling_interval=min(POLL_SECONDS, settings.heartbeat_seconds),
            shutdown_graceful_timeout=0,  # stop: children checkpoint now, runs go back to the queue
            install_signal_handlers=False,
            update_heartbeat_interval=settings.heartbeat_seconds,
            stalled_worker_timeout=settings.grace_seconds,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await asyncio.to_thread(_warm_up, state.mp)
        reaper = asyncio.create_task(_reap_forever(state))
        state.log(
            f"worker {state.host} pid {state.pid} on queue(s) {', '.join(settings.queues)}, "
            f"concurrency {settings.concurrency}"
        )
        try:
            await worker.run()
        finally:
            reaper.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    state.log(f"worker {state.host} pid {state.pid} stopped")


def _warm_up(mp: Any) -> None:
    """Start the fork server (its imports) and one child now, not with the first run."""
    process = mp.Process(target=os.getpid, name="signdb-warm-up")
    process.start()
    process.join()


async def _reap_forever(state: _State) -> None:
    period = min(state.settings.grace_seconds / 3, 10.0)
    while True:
        await asyncio.sleep(period)
        try:
            reaped = await asyncio.to_thread(reap, state.engine, state.settings.grace_seconds)
        except SignDBError as e:  # the database away: the next look tries again
            logger.debug("reaping failed: %s", e)
            continue
        for what, action in reaped.actions:
            state.log(f"reaper: {'run ' if isinstance(what, int) else 'sweep '}{what}: {action}")
