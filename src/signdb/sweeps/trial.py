"""One claimed trial: its repeats as signdb runs, its heartbeat, and what Optuna is told.

Every repeat ``r`` is a run of the built-in trainer with seed ``sweep.seed + r``
(its split and its model's initialisation), its pixels taken from the
worker's :class:`~signdb.tracking.ImagePool`. After training, the run's val and
test predictions are logged, so each run has its evaluation rows and its
headline metrics; the trial's value is the mean of its runs' objective.

Mini-batch models report the objective after every epoch at step
``r * iterations + epoch`` (the running mean over repeats), so Optuna's
MedianPruner compares like with like and can stop a poor trial. A pruned
run keeps its steps so far and finishes ``succeeded``.

A trial is failed by a reaper when its heartbeat goes stale (its worker was
killed, or stopped past the grace period). The heartbeat thread notices the
failed state and stops the run; whatever this worker learns afterwards is
dropped, never written over the trial's retry.
"""

from __future__ import annotations

import copy
import math
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb.errors import RunInterrupted, SignDBError
from signdb.ml.base import Classifier
from signdb.ml.metrics import headline
from signdb.results import Result
from signdb.store.sweeps import StoredSweep
from signdb.sweeps.space import Space
from signdb.tracking import ImagePool, Run, TrialLink
from signdb.tracking.predictions import BOOTSTRAP
from signdb.training import (
    TrainerSettings,
    TrainSpec,
    prepare_model,
    start_spec_run,
    train_loop,
)

#: Trial states as ``sweep work`` reports them.
COMPLETE, PRUNED, FAILED, LOST, INTERRUPTED = "complete", "pruned", "failed", "lost", "interrupted"


@dataclass
class TrialOutcome(Result):
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    run_ids: list[int] = field(default_factory=list)
    message: str | None = None
    seconds: float = 0.0  # from looking for a trial to telling Optuna its result
    training_seconds: float = 0.0  # inside the training loops of its runs


@dataclass
class Worker:
    """What a worker shares across its trials."""

    engine: Engine
    sweep: StoredSweep
    study: Any  # optuna.Study
    storage: Any  # optuna.storages.RDBStorage
    pool: ImagePool
    stop: threading.Event
    progress: Callable[[int, int, int, float], None] | None = None  # (trial, step, total, cost)


class TrialHeartbeat:
    """Beats for one trial from a daemon thread, and notices when a reaper has failed it.

    Optuna's own heartbeat runs only inside ``study.optimize`` (and keeps beating
    for a trial that was already failed); this one uses the storage's public
    ``record_heartbeat`` and reads the trial's state after every beat.
    """

    def __init__(self, storage: Any, trial_id: int, number: int, interval: float) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.number = number
        self.interval = interval
        self.lost: str | None = None
        self._run: Run | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"signdb-trial-{number}", daemon=True
        )

    def __enter__(self) -> TrialHeartbeat:
        self.storage.record_heartbeat(self.trial_id)  # before anything can be lost
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 10)

    def watch(self, run: Run | None) -> None:
        """The run to stop if the trial is lost."""
        self._run = run
        if run is not None and self.lost:
            run.request_stop(self.lost)

    def check(self) -> None:
        """Read the trial's state now (also done after every beat)."""
        from optuna.trial import TrialState

        state = self.storage.get_trial(self.trial_id).state
        if state != TrialState.RUNNING and self.lost is None:
            self.lost = (
                f"trial {self.number} was failed by a reaper while this worker was "
                f"unresponsive (no heartbeat for longer than the grace period); its result "
                "is dropped so that it cannot overwrite the trial's retry"
            )
            if self._run is not None:
                self._run.request_stop(self.lost)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
                self.check()
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                continue
            if self.lost:
                return


def run_trial(worker: Worker, trial: Any) -> TrialOutcome:
    """Train the claimed ``trial``'s repeats and tell Optuna how it ended."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    sweep = worker.sweep
    params = {name: Space.from_dict(d).suggest(trial, name) for name, d in sweep.space.items()}
    outcome = TrialOutcome(trial.number, COMPLETE, None, params)
    values: list[float] = []
    with TrialHeartbeat(
        worker.storage, trial._trial_id, trial.number, sweep.heartbeat_seconds
    ) as beat:
        try:
            for repeat in range(sweep.repeats):
                if worker.stop.is_set():
                    raise RunInterrupted("stopped between repeats")
                beat.check()
                if beat.lost:
                    raise RunInterrupted(beat.lost)
                value, pruned = _repeat(worker, trial, params, repeat, values, beat, outcome)
                trial.set_user_attr("run_ids", outcome.run_ids)
                if pruned:
                    outcome.state = PRUNED
                    break
                values.append(value)
        except (RunInterrupted, UpdateFinishedTrialError) as e:
            return _interrupted(worker, trial, outcome, beat, e)
        except SignDBError as e:
            outcome.state, outcome.message = FAILED, str(e)
            trial.set_user_attr("error", str(e)[:2000])
            worker.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return outcome
        except Exception:
            worker.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        if outcome.state == PRUNED:
            frozen = worker.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            outcome.value = statistics.fmean(values)
            frozen = worker.study.tell(trial, outcome.value, skip_if_finished=True)
        if frozen.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            beat.check()
            outcome.state, outcome.message = LOST, beat.lost
    return outcome


def _interrupted(
    worker: Worker, trial: Any, outcome: TrialOutcome, beat: TrialHeartbeat, error: Exception
) -> TrialOutcome:
    """A stop (SIGTERM/SIGINT) fails the trial and queues it again; a lost trial is left alone."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    if beat.lost is None:
        beat.check()
    if beat.lost is not None:
        outcome.state, outcome.message = LOST, beat.lost
        return outcome
    worker.stop.set()
    frozen = worker.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    if frozen.state == TrialState.FAIL:
        # The same parameters, queued again for any worker (no retry limit: a
        # stop is the operator's choice, not a failure of the trial).
        RetryHeartbeatStaleTrialCallback(max_retry=None)(worker.study, copy.deepcopy(frozen))
    outcome.state = INTERRUPTED
    outcome.message = f"trial {trial.number} was stopped ({error}) and queued again"
    return outcome


def _repeat(
    worker: Worker,
    trial: Any,
    params: dict[str, Any],
    repeat: int,
    done: list[float],
    beat: TrialHeartbeat,
    outcome: TrialOutcome,
) -> tuple[float | None, bool]:
    """One run of the trial, its id and training time added to ``outcome``: (objective, pruned)."""
    spec, model, run = _start_repeat(worker, trial, params, repeat)
    outcome.run_ids.append(run.id)
    beat.watch(run)
    metric = worker.sweep.objective.removeprefix("val_")
    hook = None
    if worker.sweep.pruner.get("kind") != "none" and not model.full_batch and model.batch_size:

        def hook(epoch: int, fitted: Classifier) -> bool:
            from optuna.exceptions import UpdateFinishedTrialError

            value = _val_score(run, fitted, metric)
            if value is None:
                return False
            running = (sum(done) + value) / (len(done) + 1)
            try:
                trial.report(running, repeat * fitted.iterations + epoch)
                return trial.should_prune()
            except UpdateFinishedTrialError:  # a reaper failed the trial meanwhile
                beat.check()
                run.request_stop(beat.lost or "the trial was finished elsewhere")
                return False

    def progress(step: int, total: int, cost: float) -> None:
        if worker.progress is not None:
            worker.progress(trial.number, step, total, cost)

    try:
        with run:
            started = time.perf_counter()
            try:
                loop = train_loop(
                    run, model, spec.trainer, progress=progress, on_epoch=hook,
                    keep_probabilities=True,
                )  # fmt: skip
            finally:
                outcome.training_seconds += time.perf_counter() - started
            if run.stop_requested:
                raise RunInterrupted(beat.lost or "stop requested")
            if loop.stopped_early:
                return None, True
            scores = {}
            for split in ("val", "test"):
                arrays = run.data.split(split)
                proba = loop.probabilities[split]  # the loop's final pass, in id order
                # Intervals on test only: val picks the configuration, sweep_summary its spread.
                bootstrap = 0 if split == "val" else BOOTSTRAP
                run.log_predictions(split, arrays.ids, proba, bootstrap=bootstrap)
                if split == "val":
                    scores = headline(arrays.labels, proba, run.classes)
    finally:
        beat.watch(None)
        if run.stop_requested and beat.lost is None:
            worker.stop.set()  # SIGTERM/SIGINT arrived while the run had the handlers
    value = scores.get(metric)
    if value is None or not math.isfinite(value):
        raise SignDBError(f"run {run.id} has no val {metric}: its val split is empty")
    return float(value), False


def _start_repeat(
    worker: Worker, trial: Any, params: dict[str, Any], repeat: int
) -> tuple[TrainSpec, Classifier, Run]:
    """Repeat ``repeat`` of the trial as a started signdb run that belongs to it."""
    sweep = worker.sweep
    spec = TrainSpec(
        dataset=sweep.dataset,
        model=sweep.model,
        classes=list(sweep.classes),
        hyperparams={**sweep.fixed, **params},
        seed=sweep.seed + repeat,
        test_fraction=sweep.test_fraction,
        val_fraction=sweep.val_fraction,
        split=sweep.split,
        engine=sweep.engine,
        name=f"{sweep.name} trial {trial.number} repeat {repeat}",
        trainer=TrainerSettings(cache="on"),
    )
    model = prepare_model(worker.engine, spec)
    run = start_spec_run(
        worker.engine,
        spec,
        model,
        resume_hint=None,  # a trial's run is never resumed by hand: the sweep retries it
        pool=worker.pool,
        trial=TrialLink(sweep.name, trial.number, repeat),
    )
    return spec, model, run


def _val_score(run: Run, model: Classifier, metric: str) -> float | None:
    arrays = run.data.split("val")
    if not len(arrays.ids):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        proba = model.predict_proba_pixels(arrays.pixels)
    return headline(arrays.labels, np.asarray(proba), run.classes)[metric]
