"""A run's images as numpy batches: streamed from PostgreSQL, or cached in memory.

Batches come from one SQLAlchemy streaming select (server-side cursor,
``yield_per``; :func:`signdb.store.images.stream_run_images`), and pixels are
decoded with ``np.frombuffer``. With the cache, a split's uint8 pixels are kept
in memory once read, when they fit a budget; with an
:class:`~signdb.tracking.pool.ImagePool` they come from one shared read of the
dataset. Both paths give the same batches
in the same order, so a run trained either way ends with identical weights:
in id order, or shuffled by ``md5(sha256:seed:epoch)``, which PostgreSQL
computes when streaming and :func:`order_key` when cached.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import DatabaseUnavailable, InvalidArgument
from signdb.ml.base import pixels_to_float
from signdb.store import images as image_store
from signdb.store import runs as run_store
from signdb.tracking.pool import ImagePool

CACHE_BUDGET_BYTES = 1 << 30
CACHE_MODES = ("auto", "on", "off")
#: Rows per read when a whole split is wanted (evaluation, the cache).
READ_CHUNK = 512


def order_key(sha256: str, seed: int, epoch: int) -> str:
    """Python twin of the SQL ``md5(sha256 || ':' || seed || ':' || epoch)``."""
    return hashlib.md5(f"{sha256}:{seed}:{epoch}".encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class SplitArrays:
    """A whole split: uint8 pixels, true labels, image ids and pixel hashes, in id order."""

    pixels: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    sha256: list[str]


def check_cache_mode(cache: str) -> str:
    if cache not in CACHE_MODES:
        raise InvalidArgument(f"--cache must be auto, on or off, got {cache!r}")
    return cache


class RunData:
    """Read access to one run's split assignment (``run_images``)."""

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        shape: tuple[int, int, int],
        classes: list[int],
        seed: int,
        cache: str = "auto",
        retry_seconds: float = 0.0,
        pool: ImagePool | None = None,
        standby: Engine | None = None,
    ) -> None:
        check_cache_mode(cache)
        self.pool = pool
        #: The hot standby image reads go to (None: the primary); see :meth:`image_engine`.
        self.standby = standby
        self._replayed = standby is None
        self.retry_seconds = retry_seconds
        self.engine = engine
        self.run_id = run_id
        self.shape = tuple(shape)
        self.classes = np.asarray(sorted(classes))
        self.seed = seed
        with transaction(engine, "reading the run's split sizes") as session:
            self.sizes = run_store.split_sizes(session, run_id)
        need = sum(self.sizes.values()) * int(np.prod(shape))
        self.cached = (
            pool is not None or cache == "on" or (cache == "auto" and need <= CACHE_BUDGET_BYTES)
        )
        self._cache: dict[str, SplitArrays] = {}
        self._full: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- reading -----------------------------------------------------------------
    def image_engine(self) -> Engine:
        """Where this run's images are read: the standby once it has replayed the run's
        split assignment (waited for once, see :mod:`signdb.tracking.standby`), else
        the primary."""
        if self.standby is None:
            return self.engine
        if not self._replayed:
            from signdb.tracking.standby import wait_for_replay

            wait_for_replay(self.engine, self.standby, self.run_id, self.sizes)
            self._replayed = True
        return self.standby

    def stream(
        self,
        splits: list[str],
        chunk: int,
        shuffle: tuple[int, int] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[image_store.ImageChunk]:
        """Chunks of the run's images of ``splits``, straight from PostgreSQL.

        A connection lost mid-stream (a server restart) is opened again, for up
        to ``retry_seconds``, and the read continues at the row it had reached:
        the order is deterministic, so the rows skipped are exactly those read.
        """
        offset = 0
        deadline: float | None = None  # set by a failure, cleared by progress
        delay = 0.25
        engine = self.image_engine()
        while True:
            try:
                with transaction(engine, "reading the run's images") as session:
                    for part in image_store.stream_run_images(
                        session,
                        self.run_id,
                        splits,
                        self.shape,
                        chunk=chunk,
                        shuffle=shuffle,
                        offset=offset,
                        shard=shard,
                    ):
                        offset += len(part.ids)
                        deadline, delay = None, 0.25
                        yield part
                return
            except DatabaseUnavailable:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_seconds
                if now + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def split(self, split: str) -> SplitArrays:
        """Every image of ``split`` in id order (cached when the cache is on)."""
        if split in self._cache:
            return self._cache[split]
        if self.pool is not None:
            arrays = self._from_pool(split)
            self._cache[split] = arrays
            return arrays
        parts = list(self.stream([split], READ_CHUNK))
        if parts:
            arrays = SplitArrays(
                np.concatenate([p.pixels for p in parts]),
                np.concatenate([p.labels for p in parts]),
                np.concatenate([p.ids for p in parts]),
                [s for p in parts for s in p.sha256],
            )
        else:
            arrays = SplitArrays(
                np.zeros((0, *self.shape), np.uint8),
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                [],
            )
        if self.cached:
            self._cache[split] = arrays
        return arrays

    def _from_pool(self, split: str) -> SplitArrays:
        with transaction(self.engine, "reading the run's split") as session:
            ids, labels, sha256 = image_store.run_split_index(session, self.run_id, split)
        return SplitArrays(self.pool.take(ids), labels, ids, sha256)

    def index(self, labels: np.ndarray) -> np.ndarray:
        """True labels -> class indices (columns of the probability matrix)."""
        return np.searchsorted(self.classes, labels)

    # -- what models consume ---------------------------------------------------------
    def steps_per_epoch(self, batch_size: int | None, split: str = "train") -> int:
        n = self.sizes.get(split, 0)
        if not batch_size or batch_size >= n:
            return 1
        return -(-n // batch_size)

    def batches(
        self, split: str, batch_size: int | None, *, shuffle: bool = True, epoch: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X float32 NHWC in [0, 1], y class indices) batches covering ``split`` once.

        ``batch_size=None`` (or at least the split's size) gives one batch of
        everything, in id order: a full batch's order changes nothing.
        Otherwise the order is shuffled for ``epoch`` when ``shuffle``. Streaming
        holds at most one batch (plus the driver's buffer) in memory.
        """
        n = self.sizes.get(split, 0)
        if not batch_size or batch_size >= n:
            yield self._full_batch(split)
            return
        if self.cached:
            arrays = self.split(split)
            if shuffle:
                keys = [(order_key(s, self.seed, epoch), i) for i, s in enumerate(arrays.sha256)]
                order = np.asarray([i for _, i in sorted(keys)], dtype=np.intp)
            else:
                order = np.arange(n)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield pixels_to_float(arrays.pixels[idx]), self.index(arrays.labels[idx])
            return
        shuffled = (self.seed, epoch) if shuffle else None
        for chunk in self.stream([split], batch_size, shuffled):
            yield pixels_to_float(chunk.pixels), self.index(chunk.labels)

    def _full_batch(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        # Full-batch models see the same array every step: convert it once.
        if split in self._full:
            return self._full[split]
        arrays = self.split(split)
        batch = (pixels_to_float(arrays.pixels), self.index(arrays.labels))
        if self.cached:
            self._full[split] = batch
        return batch

    def pixel_chunks(
        self, split: str, shard: tuple[int, int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(uint8 pixels, y class indices) chunks covering ``split`` once in id order, for
        scoring with :meth:`~signdb.ml.base.Classifier.predict_proba_pixels`.

        ``shard=(index, count)`` keeps positions ``index, index + count, ...`` of that
        order: one rank's part of a distributed evaluation.
        """
        if shard is not None and shard[1] > 1:
            if split in self._cache:
                arrays = self._cache[split]
                pixels, labels = (
                    arrays.pixels[shard[0] :: shard[1]],
                    arrays.labels[shard[0] :: shard[1]],
                )
                for start in range(0, len(labels), READ_CHUNK):
                    sl = slice(start, start + READ_CHUNK)
                    yield pixels[sl], self.index(labels[sl])
                return
            for chunk in self.stream([split], READ_CHUNK, shard=shard):
                yield chunk.pixels, self.index(chunk.labels)
            return
        if self.cached or split in self._cache:
            arrays = self.split(split)
            for start in range(0, len(arrays.labels), READ_CHUNK):
                sl = slice(start, start + READ_CHUNK)
                yield arrays.pixels[sl], self.index(arrays.labels[sl])
            return
        for chunk in self.stream([split], READ_CHUNK):
            yield chunk.pixels, self.index(chunk.labels)
