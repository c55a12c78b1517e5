"""Whole batches of a run's split for one reader (a rank, a DataLoader worker), and how many.

:func:`epoch_plan` says how many global batches an epoch has when ``world_size``
processes share each one, and which rows that leaves in; :func:`read_batches`
streams one reader's share with :func:`signdb.store.batches.copy_run_batches`,
going on from the batch it had reached when a lost connection comes back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import DatabaseUnavailable, InvalidArgument
from signdb.store.batches import Batch, Share, copy_run_batches


@dataclass(frozen=True)
class EpochPlan:
    """One epoch of ``images`` split into global batches of ``global_batch`` over ``world_size``.

    >>> plan = epoch_plan(images=10, global_batch=4, world_size=2)
    >>> plan.steps, plan.used, plan.batch  # batches of 4, 4, 2: every rank gets images
    (3, 10, 2)
    >>> epoch_plan(images=9, global_batch=4, world_size=2).used  # the last 1 cannot be shared
    8
    """

    steps: int  # global batches (optimizer steps) per epoch, the same on every rank
    used: int  # rows of the ordered split the epoch reads: the rest waits for another epoch
    batch: int  # each rank's share of a full global batch
    world_size: int

    def last_size(self) -> int:
        """Images in the epoch's last global batch."""
        return self.used - (self.steps - 1) * self.batch * self.world_size

    def size_of(self, index: int) -> int:
        """Images in global batch ``index`` of the epoch."""
        return self.batch * self.world_size if index < self.steps - 1 else self.last_size()


def epoch_plan(images: int, global_batch: int | None, world_size: int = 1) -> EpochPlan:
    """The epoch's batches: ``global_batch`` None (or at least ``images``) is one full batch.

    A global batch is split evenly: each rank takes ``global_batch / world_size``
    of it, so ``global_batch`` must be a multiple of ``world_size``. Every rank
    must get at least one image of every batch, or one of them would wait for
    the others forever; a last partial batch smaller than ``world_size`` is
    therefore left out of the epoch (as ``DistributedSampler(drop_last=True)``
    leaves out a short last batch). With one process nothing is ever left out.
    """
    if images < world_size:
        raise InvalidArgument(
            f"the split has {images} images, fewer than the {world_size} processes that would "
            "share it; train with fewer processes"
        )
    if not global_batch or global_batch >= images:
        share = -(-images // world_size)
        return EpochPlan(steps=1, used=images, batch=share, world_size=world_size)
    check_global_batch(global_batch, world_size)
    full, rest = divmod(images, global_batch)
    if rest == 0 or rest >= world_size:
        return EpochPlan(-(-images // global_batch), images, global_batch // world_size, world_size)
    return EpochPlan(full, images - rest, global_batch // world_size, world_size)


def check_global_batch(global_batch: int | None, world_size: int) -> None:
    """A global batch must split evenly over the processes (None: a full batch, always)."""
    if global_batch and global_batch % world_size:
        low = global_batch - global_batch % world_size
        raise InvalidArgument(
            f"batch size {global_batch} does not split evenly over {world_size} processes; "
            f"use a multiple of {world_size} (e.g. --batch-size {low or world_size}): it is the "
            "global batch, each process trains on batch size / processes of it"
        )


def read_batches(
    engine: Engine,
    run_id: int,
    split: str,
    shape: tuple[int, int, int],
    share: Share,
    *,
    shuffle: tuple[int, int] | None,
    retry_seconds: float,
    skip: int = 0,
) -> Iterator[Batch]:
    """The reader's batches, from batch ``skip`` on; a connection lost mid-way is opened
    again (for up to ``retry_seconds`` after the failure) and the read continues at the
    batch it had reached: the order is deterministic, so nothing repeats or goes missing."""
    offset = skip * share.batch
    delay, deadline = 0.25, None
    while True:
        try:
            with transaction(engine, f"reading the {split} images of run {run_id}") as session:
                for batch in copy_run_batches(
                    session, run_id, split, shape, share, shuffle=shuffle, offset=offset
                ):
                    offset += len(batch.ids)
                    delay, deadline = 0.25, None
                    yield batch
            return
        except DatabaseUnavailable:
            deadline = deadline or time.monotonic() + retry_seconds
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
