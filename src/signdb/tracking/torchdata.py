"""PyTorch's data loading over a signdb run: :class:`RunDataset` (public as ``signdb.torch``).

A ``torch.utils.data.IterableDataset`` of one split of a :class:`~signdb.tracking.Run`,
streamed from PostgreSQL (or from a hot standby of it, see
:mod:`signdb.tracking.standby`). Each DataLoader worker, on each
``torch.distributed`` rank, asks for its own shard in SQL (``row_number() %
count``) and receives only its rows, so every image is seen exactly once per
epoch over all shards, and memory stays at a few chunks per worker whatever
the split's size.

Two shapes of item:

* per image (the default): ``(CHW float32 tensor, class index)``, read by
  :func:`signdb.store.images.stream_run_images` (a server-side cursor);
* whole batches (``batch_size=B``): ``(NCHW float32 tensor, int64 class
  indices)`` of up to ``B`` images, read by one binary ``COPY`` and decoded
  with one ``np.frombuffer`` per batch (:mod:`signdb.store.batches`); use it
  with ``DataLoader(data, batch_size=None)``. The tensor is NCHW in
  ``channels_last`` memory, in page-locked memory when CUDA is available (in
  the main process; workers leave that to ``DataLoader(pin_memory=True)``).
  Each batch holds the next ``B`` images of the per-image order, so the two
  shapes yield the same images in the same order.

The order is the run's own shuffled order for the epoch, as in
``run.batches(split, shuffle=True, epoch=epoch)``: shard ``k`` of ``n`` holds
positions ``k, k + n, ...`` of it, so a ``DataLoader(batch_size=1)`` yields
that order exactly with any number of workers, and larger batches only
interleave it. In batch mode rank ``r`` takes positions ``r, r + world_size,
...`` and its workers take whole batches in turn, so each rank's ``k``-th batch
is its share of the epoch's ``k``-th global batch of ``B * world_size``
images, and every rank has the same number of batches (a last global batch
smaller than ``world_size`` is left out of the epoch; see
:func:`signdb.tracking.feed.epoch_plan`).

Workers never share a database connection with the process that forked them:
a worker starts its engine with a pool of its own (SQLAlchemy's
``engine.dispose(close=False)`` for multiprocessing) and closes its connection
when its pass ends. The dataset holds only picklable values (the URL, the run's
id, shape, classes and seed), so spawned workers work too. Without PyTorch,
importing this module fails with what to install.

Examples
--------
>>> from torch.utils.data import DataLoader
>>> from signdb.torch import RunDataset
>>> with db.start_run("shapes", "doc:torch", val_fraction=0.25) as run:
...     train = RunDataset(run, "train")
...     for epoch in range(2):
...         train.set_epoch(epoch)  # a new order each epoch, the same one every time
...         for X, y in DataLoader(train, batch_size=8, num_workers=2):
...             run.log(epoch, batch_mean=float(X.mean()))
>>> X.shape[1:], X.dtype, y.dtype, train.shape
(torch.Size([1, 16, 16]), torch.float32, torch.int64, (1, 16, 16))
>>> len(train) == run.record.train_size
True

Whole batches, for ``DataLoader(batch_size=None)`` or a plain loop:

>>> with db.start_run("shapes", "doc:torch-batches") as run:
...     batches = RunDataset(run, "train", batch_size=8)
...     sizes = [len(y) for X, y in DataLoader(batches, batch_size=None, num_workers=2)]
>>> sum(sizes) == run.record.train_size, max(sizes), len(batches) == len(sizes)
(True, 8, True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import get_engine, transaction
from signdb.errors import DatabaseUnavailable, InvalidArgument
from signdb.ml.base import pixels_to_float
from signdb.ml.torchbase import require_torch
from signdb.store import images as image_store
from signdb.store.batches import Share
from signdb.tracking.feed import EpochPlan, epoch_plan, read_batches
from signdb.tracking.run import Run

try:
    torch = require_torch()
except InvalidArgument as missing:  # the message says: pip install 'signdb[torch]'
    raise ImportError(str(missing), name="torch") from missing

from signdb.ml.torchfeed import pixels_to_tensor  # noqa: E402 - needs torch, checked above

__all__ = ["RunDataset"]

SPLITS = ("train", "val", "test")
#: Rows per round trip to PostgreSQL, per worker: a few batches, whatever the split's size.
DEFAULT_CHUNK = 64


class RunDataset(torch.utils.data.IterableDataset):
    """``(image, class index)`` pairs of one split of ``run``, straight from PostgreSQL.

    Images are CHW float32 tensors in [0, 1] (the values of ``run.arrays``);
    class indices are positions in ``run.classes``, the columns
    ``run.log_predictions`` takes. ``shuffle`` orders each epoch as
    ``run.batches(split, shuffle=True, epoch=epoch)`` does; without it the
    order is by image id. Call :meth:`set_epoch` before each epoch, as with
    ``DistributedSampler.set_epoch``; it reaches persistent workers too.

    ``batch_size=B`` yields whole batches instead: ``(X, y)`` with ``X`` float32
    ``(n, C, H, W)`` (channels_last memory) and ``y`` int64 class indices, ``n <=
    B`` (see the module docstring; ``pin_memory`` defaults to whether CUDA is
    available). ``B`` is this process's batch, as a DataLoader's ``batch_size``:
    over ``world_size`` ranks one optimizer step sees ``B * world_size`` images.

    ``rank`` and ``world_size`` default to ``torch.distributed``'s when it is
    initialized, else to a single process. ``chunk`` is the number of rows per
    round trip of the per-image read, which bounds each worker's memory.

    >>> with db.start_run("shapes", "doc:torch-shards") as run:
    ...     halves = [RunDataset(run, "train", rank=r, world_size=2) for r in (0, 1)]
    ...     seen = [float(x.sum()) for half in halves for x, _ in half]
    >>> len(seen) == run.record.train_size == sum(len(h) for h in halves)
    True
    """

    def __init__(
        self,
        run: Run,
        split: str,
        shuffle: bool = True,
        epoch: int = 0,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        chunk: int = DEFAULT_CHUNK,
        batch_size: int | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(run, Run):
            raise InvalidArgument(
                f"RunDataset needs a signdb Run (what db.start_run(...) returns), "
                f"got {type(run).__name__}"
            )
        if split not in SPLITS:
            raise InvalidArgument(f"split must be train, val or test, got {split!r}")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise InvalidArgument(f"chunk must be a positive number of rows, got {chunk!r}")
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
        ):
            raise InvalidArgument(
                f"batch_size must be a positive number of images, got {batch_size!r}"
            )
        sizes = {s: run.data.sizes.get(s, 0) for s in SPLITS}
        if not sizes[split]:
            hint = "; start the run with val_fraction > 0" if split == "val" else ""
            counts = ", ".join(f"{s} {n}" for s, n in sizes.items())
            raise InvalidArgument(
                f"run {run.id} has no images in its {split!r} split ({counts}){hint}"
            )
        self.run_id = run.id
        self.split = split
        self.shuffle = bool(shuffle)
        self.chunk = chunk
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.size = sizes[split]  # of the whole split, over every shard
        self.batch_size = batch_size
        self._plan: EpochPlan | None = None
        if batch_size is not None:
            self._plan = epoch_plan(self.size, batch_size * self.world_size, self.world_size)
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        self.pin_memory = bool(pin_memory)
        self._shape = tuple(run.data.shape)
        height, width, channels = self._shape
        #: (channels, height, width) of every image: what a model's first layer takes.
        self.shape = (channels, height, width)
        self._classes = np.asarray(run.classes)
        self._seed = run.record.seed
        self._retry_seconds = run.retry_seconds
        # Images come from the run's standby, once it has the run (waited for here,
        # in the main process), else from the primary.
        images = run.data.image_engine()
        # Holds the password: never printed, logged or put in an error message.
        self._url = images.url.render_as_string(hide_password=False)
        self._owner_pid = os.getpid()
        self._run_engine: Engine | None = images  # dropped when pickled
        # Shared memory, so set_epoch() in the main process reaches persistent workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.set_epoch(epoch)

    # -- what DataLoader and the training loop call -------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Order the next pass for ``epoch`` (reproducible; every shard agrees on it).

        >>> with db.start_run("shapes", "doc:set_epoch") as run:
        ...     data = RunDataset(run, "train")
        ...     first = [float(x.sum()) for x, _ in data]
        ...     data.set_epoch(1)
        ...     second = [float(x.sum()) for x, _ in data]
        >>> first != second and sorted(first) == sorted(second)
        True
        """
        if not isinstance(epoch, int | np.integer) or isinstance(epoch, bool) or epoch < 0:
            raise InvalidArgument(f"epoch must be an integer >= 0, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        """Items of this shard: this rank's in the main process, this worker's in a worker
        (images, or batches with ``batch_size``)."""
        if self._plan is not None:
            workers, worker = _worker()
            return len(range(worker, self._plan.steps, workers))
        index, count = self._shard()
        return len(range(index, self.size, count))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        if self._plan is not None:
            yield from self.iter_batches(self.epoch)
            return
        index, count = self._shard()
        shard = None if count == 1 else (index, count)
        in_worker = os.getpid() != self._owner_pid
        engine = _engine_of_this_process(self._url) if in_worker else self._owner_engine()
        try:
            for part in self._chunks(engine, shard, self.epoch):
                # (n, h, w, c) -> (n, c, h, w); a view, not a copy, for gray images.
                images = torch.from_numpy(pixels_to_float(part.pixels)).permute(0, 3, 1, 2)
                labels = np.searchsorted(self._classes, part.labels).tolist()
                yield from zip(images.contiguous().unbind(0), labels, strict=True)
        finally:
            if in_worker:
                engine.dispose()  # end this worker's connection cleanly; the next pass opens one

    def iter_batches(
        self, epoch: int, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This reader's batches of ``epoch`` from batch ``skip`` on (what iterating yields
        with ``batch_size``; the built-in trainer resumes mid-epoch with ``skip``)."""
        if self._plan is None:
            raise InvalidArgument("iter_batches needs a RunDataset made with batch_size=B")
        workers, worker = _worker()
        share = Share(
            batch=self._plan.batch,
            used=self._plan.used,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            workers=workers,
        )
        in_worker = os.getpid() != self._owner_pid
        engine = _engine_of_this_process(self._url) if in_worker else self._owner_engine()
        pin = self.pin_memory and not in_worker
        try:
            for batch in read_batches(
                engine,
                self.run_id,
                self.split,
                self._shape,
                share,
                shuffle=(self._seed, epoch) if self.shuffle else None,
                retry_seconds=self._retry_seconds,
                skip=skip,
            ):
                labels = torch.from_numpy(np.searchsorted(self._classes, batch.labels))
                yield pixels_to_tensor(batch.pixels, pin=pin), labels
        finally:
            if in_worker:
                engine.dispose()

    @property
    def plan(self) -> EpochPlan | None:
        """With ``batch_size``: the epoch's global batches (the same on every rank)."""
        return self._plan

    def __getstate__(self) -> dict[str, Any]:
        # An engine is neither picklable nor shareable across processes.
        return {**self.__dict__, "_run_engine": None}

    def __repr__(self) -> str:
        order = f"shuffled, epoch {self.epoch}" if self.shuffle else "by id"
        batches = f", batches of {self.batch_size}" if self.batch_size else ""
        return (
            f"<RunDataset run {self.run_id} {self.split}: {self.size} images{batches}, {order}, "
            f"rank {self.rank} of {self.world_size}>"
        )

    # -- helpers --------------------------------------------------------------------
    def _shard(self) -> tuple[int, int]:
        """(index, count) of this reader: ranks times DataLoader workers."""
        workers, worker = _worker()
        return self.rank * workers + worker, self.world_size * workers

    def _owner_engine(self) -> Engine:
        return self._run_engine if self._run_engine is not None else get_engine(self._url)

    def _chunks(
        self, engine: Engine, shard: tuple[int, int] | None, epoch: int
    ) -> Iterator[image_store.ImageChunk]:
        """The shard's rows, continuing where they stopped when the server comes back.

        As :meth:`signdb.tracking.RunData.stream` does, except that the retry
        window opens at the failure, not at the start of the pass.
        """
        shuffle = (self._seed, epoch) if self.shuffle else None
        offset, delay, deadline = 0, 0.25, None
        while True:
            try:
                doing = f"reading the {self.split} images of run {self.run_id}"
                with transaction(engine, doing) as session:
                    for part in image_store.stream_run_images(
                        session,
                        self.run_id,
                        [self.split],
                        self._shape,
                        chunk=self.chunk,
                        shuffle=shuffle,
                        offset=offset,
                        shard=shard,
                    ):
                        offset += len(part.ids)
                        delay, deadline = 0.25, None
                        yield part
                return
            except DatabaseUnavailable:
                deadline = deadline or time.monotonic() + self._retry_seconds
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _worker() -> tuple[int, int]:
    """(DataLoader workers, this worker's index); (1, 0) outside a worker."""
    info = torch.utils.data.get_worker_info()
    return (info.num_workers, info.id) if info is not None else (1, 0)


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The constructor's values, else ``torch.distributed``'s, else one process."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    elif (rank is None) != (world_size is None):
        raise InvalidArgument(
            "pass rank and world_size together (or neither, to read them from "
            f"torch.distributed), got rank={rank!r}, world_size={world_size!r}"
        )
    rank, world_size = (0, 1) if rank is None else (rank, world_size)
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (rank, world_size))
    if not ints or world_size < 1 or not 0 <= rank < world_size:
        raise InvalidArgument(
            f"rank must be in 0 .. world_size - 1, got rank={rank!r}, world_size={world_size!r}"
        )
    return rank, world_size


def _engine_of_this_process(url: str) -> Engine:
    """signdb's engine for ``url`` with a pool of this process's own.

    In a forked worker the cached engine still holds the parent's connections;
    ``dispose(close=False)`` forgets them without closing them under the
    parent (SQLAlchemy's recipe for multiprocessing). A spawned worker gets a
    new engine anyway.
    """
    engine = get_engine(url)
    engine.dispose(close=False)
    return engine
