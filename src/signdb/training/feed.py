"""How the training loop gets its batches and takes a step: numpy arrays, or tensors for torch.

* :class:`ArrayFeed` (the numpy engine, and any run with an image pool):
  ``run.data.batches`` and :meth:`~signdb.ml.base.Classifier.train_step`.
* :class:`TensorFeed` (the torch engine): :class:`signdb.torch.RunDataset`
  batches (one binary COPY, one ``np.frombuffer`` per batch, pinned memory
  for CUDA), the next one read by a background thread while this one trains,
  fed to :func:`signdb.ml.torchddp.train_batch`, or to
  :func:`~signdb.ml.torchddp.train_share` on each rank of a distributed run.

Both give the same batches in the same order for one process (the run's
shuffled order for the epoch, a full batch in id order), so a torch run
trains as it did before the feed existed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from signdb.ml.base import Classifier, StepResult
from signdb.tracking import Run
from signdb.tracking.feed import epoch_plan
from signdb.training.ranks import Solo


class ArrayFeed:
    """numpy batches from ``run.data`` (streamed, cached or pooled)."""

    def __init__(self, run: Run, model: Classifier) -> None:
        self.data = run.data
        self.batch_size = None if model.full_batch else model.batch_size
        self.steps = self.data.steps_per_epoch(self.batch_size)

    def epoch(self, epoch: int, skip: int) -> Iterator[tuple[Any, Any]]:
        for i, batch in enumerate(self.data.batches("train", self.batch_size, epoch=epoch)):
            if i >= skip:
                yield batch

    def size(self, index: int, y: Any) -> int:
        return len(y)

    def step(self, model: Classifier, X: Any, y: Any, step: int, index: int) -> StepResult:
        return model.train_step(X, y, step)


class TensorFeed:
    """Tensor batches of this rank's share, prefetched; a distributed step on several ranks."""

    def __init__(self, run: Run, model: Classifier, ranks: Solo) -> None:
        from signdb.ml.torchbase import require_torch
        from signdb.tracking.torchdata import RunDataset

        torch = require_torch()
        self.ranks = ranks
        self.full = model.full_batch or not model.batch_size
        world = ranks.world_size
        self.plan = epoch_plan(
            run.data.sizes["train"], None if self.full else model.batch_size, world
        )
        self.steps = self.plan.steps
        self.dataset = RunDataset(
            run,
            "train",
            shuffle=not self.full,  # a full batch in id order, as run.data gives it
            rank=ranks.rank,
            world_size=world,
            batch_size=self.plan.batch,
            pin_memory=model.device.startswith("cuda") and torch.cuda.is_available(),
        )

    def epoch(self, epoch: int, skip: int) -> Iterator[tuple[Any, Any]]:
        from signdb.ml.torchfeed import prefetch

        return prefetch(self.dataset.iter_batches(epoch, skip))

    def size(self, index: int, y: Any) -> int:
        """Images in the global batch (every rank's share) at ``index`` of the epoch."""
        return self.plan.size_of(index)

    def step(self, model: Classifier, X: Any, y: Any, step: int, index: int) -> StepResult:
        from signdb.ml import torchddp

        if self.ranks.world_size == 1:
            return torchddp.train_batch(model, X, y, step)
        return torchddp.train_share(
            model,
            X,
            y,
            step,
            rank=self.ranks.rank,
            world_size=self.ranks.world_size,
            batch_total=self.plan.size_of(index),
        )


def feed_for(run: Run, model: Classifier, ranks: Solo) -> ArrayFeed | TensorFeed:
    """The torch engine reads tensors, unless a sweep worker's pool holds the images."""
    if getattr(model, "engine", "numpy") == "torch" and run.data.pool is None:
        return TensorFeed(run, model, ranks)
    return ArrayFeed(run, model)
