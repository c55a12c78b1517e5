"""The built-in training loop, written on :class:`signdb.tracking.Run` like anyone's own code.

One :meth:`~signdb.ml.base.Classifier.train_step` per batch (numpy arrays,
or tensors for the torch engine: :mod:`signdb.training.feed`). Metrics are
logged per step (``cost``, ``train_accuracy``) and every ``eval_every`` steps
(``test_accuracy``); checkpoints, with the optimizer state, every
``checkpoint_every`` steps. A run resumed at a checkpoint skips the batches
it already trained on, so it ends with the weights an uninterrupted run has.

On several ranks (``ranks``, :mod:`signdb.training.ranks`) the loop is the
same on each: every rank trains its share of each global batch, evaluates
its shard of the held-out splits, and the counts are summed over the ranks;
only rank 0's run writes (another rank's is a
:class:`~signdb.tracking.JoinedRun`, whose writes are no-ops).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from signdb.errors import RunInterrupted, SignDBError, TrainingError
from signdb.ml.base import Classifier, StepResult
from signdb.tracking import Run, RunData
from signdb.training.feed import feed_for
from signdb.training.ranks import Solo
from signdb.training.spec import TrainerSettings

#: The default checkpoint schedule also waits this long between checkpoints,
#: so short steps do not spend their time writing weights.
CHECKPOINT_SECONDS = 10.0

Progress = Callable[[int, int, float], None]  # (step, total_steps, cost)
#: Called after each epoch with (epoch, model); returning True ends training
#: there, as a finished run (a sweep's pruner stopping a poor trial).
EpochHook = Callable[[int, Classifier], bool]


@dataclass(frozen=True)
class LoopOutcome:
    steps: int
    final_cost: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    stopped_early: bool = False  # an epoch hook ended training before the last epoch
    #: The final model's probabilities of each held-out split (val when it has
    #: images, test), in id order, as ``predictions`` stores them: log them
    #: with ``run.log_predictions`` without predicting again.
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)


def predict_split(model: Classifier, data: RunData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, k) float64, true class indices (n,)) of ``split``, in id order.

    Through :meth:`~signdb.ml.base.Classifier.predict_proba_pixels`, what
    ``signdb evaluate`` stores, so an accuracy logged here is the one it reports.
    """
    probabilities, classes = [], []
    for pixels, y in data.pixel_chunks(split):
        probabilities.append(model.predict_proba_pixels(pixels))
        classes.append(y)
    if not classes:
        return np.zeros((0, len(data.classes))), np.zeros(0, np.int64)
    return np.concatenate(probabilities), np.concatenate(classes)


def _share_correct(probabilities: np.ndarray, y: np.ndarray) -> float | None:
    return int(np.count_nonzero(np.argmax(probabilities, axis=1) == y)) / len(y) if len(y) else None


def accuracy(
    model: Classifier, data: RunData, split: str, ranks: Solo | None = None
) -> float | None:
    """The share of ``split`` that ``model`` gets right, one chunk in memory at a time
    (each rank scoring its shard of it, when there are several)."""
    ranks = ranks or Solo()
    correct = total = 0
    for pixels, y in data.pixel_chunks(split, ranks.shard()):
        correct += int(np.count_nonzero(np.argmax(model.predict_proba_pixels(pixels), axis=1) == y))
        total += len(y)
    correct, total = ranks.sum([correct, total])
    return correct / total if total else None


def train_loop(
    run: Run,
    model: Classifier,
    settings: TrainerSettings,
    *,
    start_step: int = 0,
    progress: Progress | None = None,
    on_epoch: EpochHook | None = None,
    keep_probabilities: bool = False,
    ranks: Solo | None = None,
) -> LoopOutcome:
    """Train ``model`` on ``run``'s train split from ``start_step`` to the end.

    Raises :class:`RunInterrupted` after a checkpoint when the run was asked
    to stop, and :class:`TrainingError` naming the step for any other failure.
    ``on_epoch`` may end training after any epoch; the run then finishes
    normally at that step (final weights, held-out accuracy).
    ``keep_probabilities`` hands back the final held-out pass's probabilities
    (:attr:`LoopOutcome.probabilities`: n x k floats per held-out split, as
    ``evaluate`` holds them), for logging them without predicting again.
    """
    try:
        return _loop(
            run,
            model,
            settings,
            start_step,
            progress,
            on_epoch,
            keep_probabilities,
            ranks or Solo(),
        )
    except SignDBError:
        raise
    except Exception as e:  # a bug or a numeric failure outside a step: still name the run
        raise TrainingError(f"run {run.id} failed: {type(e).__name__}: {e}") from e


def _loop(
    run: Run,
    model: Classifier,
    settings: TrainerSettings,
    start_step: int,
    progress: Progress | None,
    on_epoch: EpochHook | None = None,
    keep_probabilities: bool = False,
    ranks: Solo = Solo(),  # noqa: B008 - stateless
) -> LoopOutcome:
    # One function on purpose: the step counter, the mid-epoch skip and the checkpoint
    # clock are shared by every branch, and a resumed run must take exactly this path.
    data = run.data
    feed = feed_for(run, model, ranks)
    per_epoch = feed.steps
    total = model.iterations * per_epoch
    model.plan(total)
    eval_every = settings.eval_every or max(1, total // 20)
    checkpoint_every = settings.checkpoint_every or max(1, total // 10)
    step = start_step
    cost = math.nan
    last_checkpoint = time.monotonic()
    if step == 0:
        run.record_progress(0, total)
    for epoch in range(step // per_epoch, model.iterations):
        skip = step - epoch * per_epoch  # resuming mid-epoch
        for i, (X, y) in enumerate(feed.epoch(epoch, skip), start=skip):
            if step % eval_every == 0:
                run.log(step, **held_out(model, data, ranks))
            try:
                result = feed.step(model, X, y, step, i)
                n = feed.size(i, y)
                stop: bool | None = None  # one process: decided below, as late as possible
                if ranks.world_size > 1:  # the global batch's cost: the ranks' parts, averaged
                    # Every rank stops at the same step, or the others would wait forever.
                    total_cost, correct, stops = ranks.sum(
                        [result.cost, result.correct, run.stop_requested]
                    )
                    result = StepResult(total_cost / ranks.world_size, int(correct))
                    stop = stops > 0
            except SignDBError:
                raise
            except Exception as e:
                raise TrainingError(
                    f"run {run.id} failed at step {step}: {type(e).__name__}: {e}"
                ) from e
            cost = result.cost
            if not math.isfinite(cost):
                raise TrainingError(
                    f"run {run.id} diverged at step {step}: the cost is {cost}; lower the "
                    f"learning rate (lr {getattr(model, 'lr', '?')}) or normalise the inputs"
                )
            if result.correct is None:
                run.log(step, cost=cost)
            else:
                run.log(step, cost=cost, train_accuracy=result.correct / n)
            step += 1
            if progress:
                progress(step, total, cost)
            if stop or (stop is None and run.stop_requested):
                if not run.stop_requested:
                    run.request_stop("another rank was asked to stop")
                if run.writes:
                    run.checkpoint(step, model.state_dict(), final=False, total_steps=total)
                hint = f"; {run.resume_hint.format(run_id=run.id)}" if run.resume_hint else ""
                raise RunInterrupted(f"run {run.id} interrupted at step {step} of {total}{hint}")
            due = step % checkpoint_every == 0 and step < total
            # Rank 0 alone keeps the checkpoint clock: no other rank writes, and a
            # time-based choice must not make the ranks disagree about anything.
            if (
                due
                and run.writes
                and (
                    settings.checkpoint_every
                    or time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS
                )
            ):
                run.checkpoint(step, model.state_dict(), final=False, total_steps=total)
                last_checkpoint = time.monotonic()
        if on_epoch is not None and on_epoch(epoch, model) and epoch + 1 < model.iterations:
            break
    train_acc = accuracy(model, data, "train", ranks)
    if keep_probabilities:
        predicted = {split: predict_split(model, data, split) for split in _held_out_splits(data)}
        final = {f"{split}_accuracy": _share_correct(*pair) for split, pair in predicted.items()}
        kept = {split: probabilities for split, (probabilities, _) in predicted.items()}
    else:
        final, kept = held_out(model, data, ranks), {}
    ranks.settle(run)
    run.log(step, **final)
    if run.writes:
        run.checkpoint(step, model.state_dict(), final=True, total_steps=total)
    run.record_accuracy(train=train_acc, val=final.get("val_accuracy"), test=final["test_accuracy"])
    return LoopOutcome(
        step, cost, train_acc, final.get("val_accuracy"), final["test_accuracy"], step < total, kept
    )


def held_out(model: Classifier, data: RunData, ranks: Solo | None = None) -> dict[str, float]:
    """``test_accuracy`` and, when the run has a val split, ``val_accuracy``."""
    ranks = ranks or Solo()
    ranks.sync_model(model)  # batch norm's statistics: rank 0's, on every rank
    return {
        f"{split}_accuracy": accuracy(model, data, split, ranks) for split in _held_out_splits(data)
    }


def _held_out_splits(data: RunData) -> list[str]:
    return ["test", "val"] if data.sizes.get("val") else ["test"]
