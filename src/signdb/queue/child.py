"""The process a worker trains one run in, on exactly the path of ``signdb train --resume``.

A queued run was created (and its split assigned) by ``submit``; the child
reopens it at its last checkpoint (step 0 for a fresh run, where resuming is
training from the start with the same seed) and trains it to the end. It lives
in its own process so that a cancel or a shutdown can always stop it (SIGTERM:
the step ends, a checkpoint is written, the run ends ``interrupted``) and so
that it dies with its worker (a SIGKILLed worker leaves no trainer behind).

Every transaction of the child first checks that its attempt is still the
run's (:func:`signdb.store.queue.check_attempt`). A superseded attempt (its
worker was paused, declared dead and replaced) stops at the first refused
transaction, with exit status :data:`EXIT_SUPERSEDED`, having written nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from sqlalchemy import event, exc
from sqlalchemy.orm import Session

from signdb import training
from signdb.db.engine import get_engine, transaction
from signdb.errors import RunInterrupted, SignDBError
from signdb.store import queue as queue_store

logger = logging.getLogger("signdb.queue")

#: The child's exit status when its attempt was superseded (EX_TEMPFAIL).
EXIT_SUPERSEDED = 75
SUPERSEDED_SQLSTATE = "SDB01"


def train_run(url: str, run_id: int, attempt: int, worker_pid: int) -> None:
    """Train attempt ``attempt`` of queued run ``run_id`` (a process target)."""
    _die_with(worker_pid)
    _fence(run_id, attempt)
    engine = get_engine(url)
    try:
        training.resume(engine, run_id)
    except RunInterrupted:
        sys.exit(0)  # the run recorded it; the worker decides what comes next
    except SignDBError as e:
        logger.error("run %s could not be trained: %s", run_id, e)
        _fail_unstarted(engine, run_id, attempt, str(e))
        sys.exit(1)


def sweep_work(url: str, name: str, worker_pid: int) -> None:
    """Run ``signdb sweep work NAME`` until the sweep has its trials (a process target)."""
    from signdb.sweeps import work

    _die_with(worker_pid)
    try:
        work(get_engine(url), name)
    except SignDBError as e:
        logger.error("sweep %r: %s", name, e)
        sys.exit(1)


def _fail_unstarted(engine, run_id: int, attempt: int, error: str) -> None:  # noqa: ANN001
    """A run that failed before training opened it (its dataset deleted, say) records why."""
    try:
        with transaction(engine, f"recording why run {run_id} could not start") as session:
            status, _, _ = queue_store.run_status(session, run_id)
            if status == "queued":
                queue_store.end_run(session, run_id, attempt, "failed", error[:10_000])
    except SignDBError:
        pass  # the worker records a failure it sees the run did not


def _fence(run_id: int, attempt: int) -> None:
    """Check the attempt at the start of every transaction this process opens."""

    def check(session: Session, transaction: object, connection: object) -> None:
        try:
            queue_store.check_attempt(connection, run_id, attempt)  # type: ignore[arg-type]
        except exc.DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) != SUPERSEDED_SQLSTATE:
                raise
            first = str(e.orig).strip().splitlines()[0]
            logger.error("%s; this attempt stops here", first)
            os._exit(EXIT_SUPERSEDED)  # nothing more to write, from any thread

    event.listen(Session, "after_begin", check)


def _die_with(worker_pid: int) -> None:
    """End this process when the worker that started it is gone (SIGKILL, a lost machine).

    Linux kills us when our parent (the worker's fork server, which exits with
    the worker) dies; a watchdog thread covers the rest.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass

    def watch() -> None:
        while True:
            try:
                os.kill(worker_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, name="signdb-worker-watch", daemon=True).start()
