"""``signdb sweep work`` and ``sweep reap``: claim queued trials until the sweep is finished.

Start any number of workers, on any machines that reach the database; they
coordinate through Optuna's tables alone. A worker:

1. fails the trials whose worker died (a stale heartbeat, or none at all past
   the grace period) and queues each again once, as Optuna's
   ``RetryHeartbeatStaleTrialCallback`` does;
2. claims the oldest WAITING trial with a row lock (``set_trial_state_values``
   returns False to every other claimer), never creating a trial of its own;
3. runs it (:func:`signdb.sweeps.trial.run_trial`);

and exits 0 once no trial is waiting or running. SIGTERM or SIGINT stops the
current run at its next step (``interrupted``), fails that trial, queues it
again, and exits 0.

This loop replaces ``study.optimize``, whose heartbeat and reaping it keeps:
``optimize`` cannot claim only queued trials, and a trial reaped under it
crashes the worker (optuna#5470, #5582).
"""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from signdb.db import sweep_storage
from signdb.db.engine import transaction
from signdb.errors import SweepError
from signdb.results import Result
from signdb.store import datasets as ds_store
from signdb.store import sweeps as sweep_store
from signdb.store.sweeps import StoredSweep
from signdb.sweeps.trial import INTERRUPTED, LOST, TrialOutcome, Worker, run_trial
from signdb.tracking import ImagePool

#: How long an idle worker waits between looks while other workers' trials run.
IDLE_SECONDS = 2.0


@dataclass
class WorkResult(Result):
    """What one worker did."""

    sweep: str
    ran: int
    run_ids: list[int]
    trials: list[dict[str, Any]] = field(default_factory=list)
    images_read: int = 0
    stopped: str | None = None  # why the worker stopped before the sweep finished


@dataclass
class ReapResult(Result):
    sweep: str
    failed: list[int]  # trial numbers failed now
    queued: list[int]  # their retries
    runs_interrupted: int


def work(
    engine: Engine,
    name: str,
    *,
    max_trials: int | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
    progress: Callable[[int, int, int, float], None] | None = None,
) -> WorkResult:
    """Run trials of sweep ``name`` until none is left (or ``max_trials`` ran)."""
    import optuna

    if max_trials is not None and (isinstance(max_trials, bool) or max_trials < 1):
        raise SweepError(f"--max-trials must be >= 1, got {max_trials}")
    sweep = _sweep(engine, name)
    storage = open_storage(engine, sweep)
    result = WorkResult(sweep.name, 0, [])
    stop = threading.Event()
    try:
        with sweep_storage.optuna_errors(f"opening sweep {name!r}"), sweep_storage.quiet():
            study = optuna.load_study(
                study_name=sweep.name, storage=storage, pruner=make_pruner(sweep)
            )
        with transaction(engine, "reading the sweep's dataset") as session:
            shape = ds_store.get_dataset(session, sweep.dataset).preprocessing.shape
        pool = ImagePool(engine, sweep.dataset_id, sweep.classes, shape)
        worker = Worker(engine, sweep, study, storage, pool, stop, progress)
        with _stop_on_signals(stop), sweep_storage.quiet():
            while not stop.is_set() and (max_trials is None or result.ran < max_trials):
                looked = time.perf_counter()
                with sweep_storage.optuna_errors(f"claiming a trial of sweep {name!r}"):
                    _reap(engine, study, sweep)
                    trial = claim(study, sweep)
                if trial is None:
                    if not _any_running(study):
                        break
                    stop.wait(min(IDLE_SECONDS, sweep.heartbeat_seconds))
                    continue
                outcome = run_trial(worker, trial)
                outcome.seconds = time.perf_counter() - looked
                result.ran += 1
                result.run_ids += outcome.run_ids
                result.trials.append(outcome.as_dict())
                if on_trial is not None:
                    on_trial(outcome)
                if outcome.state == LOST:
                    raise SweepError(
                        f"{outcome.message}. This worker stops; start `signdb sweep work "
                        f"{name}` again to go on"
                    )
                if outcome.state == INTERRUPTED:
                    result.stopped = outcome.message
                    break
            if stop.is_set() and result.stopped is None:
                result.stopped = "stopped by a signal between trials"
        result.images_read = pool.images_read
    finally:
        storage.engine.dispose()
    return result


def reap(engine: Engine, name: str) -> ReapResult:
    """Fail the trials whose worker died, queue them again, and mark their runs interrupted."""
    import optuna

    sweep = _sweep(engine, name)
    storage = open_storage(engine, sweep)
    try:
        with sweep_storage.optuna_errors(f"reaping sweep {name!r}"), sweep_storage.quiet():
            study = optuna.load_study(study_name=sweep.name, storage=storage)
            before = {t.number for t in _failed(study)}
            runs = _reap(engine, study, sweep)
            failed = sorted({t.number for t in _failed(study)} - before)
            queued = sorted(
                t.number
                for t in study.get_trials(deepcopy=False)
                if t.system_attrs.get("failed_trial") in failed
            )
    finally:
        storage.engine.dispose()
    return ReapResult(sweep.name, failed, queued, runs)


def open_storage(engine: Engine, sweep: StoredSweep) -> Any:
    """The storage every process of a sweep builds alike: the reaper's settings decide."""
    return sweep_storage.make_storage(
        engine.url,
        heartbeat_interval=sweep.heartbeat_seconds,
        grace_period=sweep.grace_seconds,
    )


def make_sampler(sweep: StoredSweep, number: int) -> Any:
    """The sampler that draws trial ``number``'s parameters, seeded from the sweep.

    One seed per trial number, not per worker: two workers never draw the same
    random sequence, and a random sweep's trials get the same points however
    many workers ran them. (TPE also conditions on the trials finished so far,
    so it is reproducible only when one worker runs the sweep.)
    """
    import optuna

    seed = (sweep.seed * 1_000_003 + number) % 2**32
    if sweep.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # grid trials carry all their params


def make_pruner(sweep: StoredSweep) -> Any:
    import optuna

    spec = sweep.pruner
    if spec.get("kind") == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec["n_startup_trials"], n_warmup_steps=spec["n_warmup_steps"]
        )
    return optuna.pruners.NopPruner()


def claim(study: Any, sweep: StoredSweep) -> Any | None:
    """Take the oldest WAITING trial, or None. Never creates a trial.

    ``set_trial_state_values`` locks the trial's row and succeeds for exactly
    one claimer (what ``Study.ask`` does first; ``ask`` would then create a new
    trial when the queue is empty, which would overrun the sweep's budget).
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        # The sampler must be in place before the Trial exists: its constructor
        # samples the relative search space.
        study.sampler = make_sampler(sweep, t.number)
        return optuna.Trial(study, t._trial_id)
    return None


def _reap(engine: Engine, study: Any, sweep: StoredSweep) -> int:
    """Stale and orphaned trials -> FAIL (+ one retry); their runs -> interrupted."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    storage = study._storage
    with transaction(engine, f"looking for orphaned trials of sweep {sweep.name!r}") as session:
        orphans = sweep_store.orphaned_trials(session, sweep.name, sweep.grace_seconds)
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in orphans:
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another reaper was first
        if failed and retry is not None:
            retry(study, copy.deepcopy(storage.get_trial(trial_id)))
    with transaction(engine, f"marking the runs of failed trials of {sweep.name!r}") as session:
        return sweep_store.interrupt_runs_of_failed_trials(
            session,
            sweep.name,
            "the sweep worker running this trial stopped sending heartbeats; the trial was "
            "failed and queued again",
        )


def _failed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.FAIL,))


def _any_running(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _sweep(engine: Engine, name: str) -> StoredSweep:
    with transaction(engine, f"reading sweep {name!r}") as session:
        if not sweep_storage.schema_exists(session.connection()):
            raise SweepError("the database has no sweep tables; run `signdb db upgrade`")
        return sweep_store.get_sweep(session, name)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (a run in progress takes them over while it trains)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
