"""A run's images as whole batches, read with one binary ``COPY ... TO STDOUT``. No commits here.

The per-row read (:func:`signdb.store.images.stream_run_images`) builds a
Python tuple per image. Here the server sends ``(id, label, pixels)`` rows in
the binary COPY format; every row of a dataset has the same length (the
pixels are ``h * w * c`` bytes), so a batch of rows is one fixed-size record
array: one ``np.frombuffer`` per batch, with no per-row Python beyond
receiving the COPY messages themselves.

Which rows, and in which order, is the per-row read's rule: the run's split in
id order or in the epoch's shuffled order, ``md5(sha256:seed:epoch), id``.
Rank ``r`` of ``world_size`` takes positions ``r, r + world_size, ...`` of it;
its ``k``-th batch of ``batch`` rows is therefore its share of the ``k``-th
global batch of ``batch * world_size`` rows. DataLoader workers take whole
batches in turn (worker ``j`` of ``n`` reads batches ``j, j + n, ...``), so a
DataLoader, which takes one batch from each worker in turn, yields the rank's
batches in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from signdb.errors import DatabaseError
from signdb.store.copy import COPY_HEADER, COPY_TRAILER, raw_connection

#: The shuffled order of :mod:`signdb.store.images` (``_SHUFFLED_ORDER``), in psycopg's
#: placeholders; tests/db/test_batched_feed.py holds the two reads to the same order.
_SHUFFLED = "md5(i.sha256 || ':' || CAST(%(seed)s AS text) || ':' || CAST(%(epoch)s AS text)), i.id"
_BY_ID = "i.id"
_COPY = (
    "COPY (SELECT i.id, i.label, i.pixels FROM ("
    "SELECT ri.image_id AS id, row_number() OVER (ORDER BY {order}) - 1 AS rn "
    "FROM signdb.run_images ri JOIN signdb.images i ON i.id = ri.image_id "
    "WHERE ri.run_id = %(run)s AND ri.split = %(split)s"
    ") AS n JOIN signdb.images i ON i.id = n.id "
    "WHERE n.rn < %(used)s AND n.rn %% %(world)s = %(rank)s "
    "AND n.rn / %(world)s / %(batch)s %% %(workers)s = %(worker)s "
    "ORDER BY n.rn OFFSET %(offset)s) TO STDOUT (FORMAT BINARY)"
)
_QUERIES = {False: _COPY.format(order=_BY_ID), True: _COPY.format(order=_SHUFFLED)}
# One reader takes every row: the ordered rows themselves, no numbering to share them out.
_WHOLE = (
    "COPY (SELECT i.id, i.label, i.pixels FROM signdb.run_images ri "
    "JOIN signdb.images i ON i.id = ri.image_id "
    "WHERE ri.run_id = %(run)s AND ri.split = %(split)s "
    "ORDER BY {order} LIMIT %(used)s OFFSET %(offset)s) TO STDOUT (FORMAT BINARY)"
)
_WHOLE_QUERIES = {False: _WHOLE.format(order=_BY_ID), True: _WHOLE.format(order=_SHUFFLED)}


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of one reader's share: ids, true labels and uint8 (n, h, w, c) pixels."""

    ids: np.ndarray
    labels: np.ndarray
    pixels: np.ndarray


@dataclass(frozen=True)
class Share:
    """Which rows of the ordered split one reader gets (see the module docstring).

    ``used`` cuts the ordered split to its first rows (a distributed epoch
    leaves out a last global batch too small to give every rank an image).
    """

    batch: int
    used: int
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        counts = (self.batch, self.world_size, self.workers)
        if min(counts) < 1 or self.used < 0:
            raise ValueError(f"bad share {self}")
        if not (0 <= self.rank < self.world_size and 0 <= self.worker < self.workers):
            raise ValueError(f"bad share {self}")


def record_dtype(shape: tuple[int, int, int]) -> np.dtype:
    """One binary COPY row of ``(id bigint, label int, pixels bytea)``: big-endian, packed."""
    return np.dtype(
        [
            ("fields", ">i2"),
            ("id_size", ">i4"),
            ("id", ">i8"),
            ("label_size", ">i4"),
            ("label", ">i4"),
            ("pixels_size", ">i4"),
            ("pixels", "u1", (int(np.prod(shape)),)),
        ]
    )


def copy_run_batches(
    session: Session,
    run_id: int,
    split: str,
    shape: tuple[int, int, int],
    share: Share,
    *,
    shuffle: tuple[int, int] | None = None,
    offset: int = 0,
) -> Iterator[Batch]:
    """The reader's batches of run ``run_id``'s ``split``, ``share.batch`` rows each (the
    last may be shorter). ``shuffle=(seed, epoch)`` orders them for that epoch;
    ``offset``, a multiple of ``share.batch``, skips that many of the reader's rows
    (a read resuming after a lost connection at the batch it had reached).
    Memory: one batch plus the COPY message in hand."""
    if offset % share.batch:
        raise ValueError(f"offset {offset} is not a multiple of the batch size {share.batch}")
    dtype = record_dtype(shape)
    params = {
        "run": run_id,
        "split": split,
        "seed": shuffle[0] if shuffle else 0,
        "epoch": shuffle[1] if shuffle else 0,
        "used": share.used,
        "world": share.world_size,
        "rank": share.rank,
        "batch": share.batch,
        "workers": share.workers,
        "worker": share.worker,
        "offset": offset,
    }
    block = share.batch * dtype.itemsize
    pending = bytearray()
    start = len(COPY_HEADER)
    whole = share.world_size == 1 and share.workers == 1
    query = (_WHOLE_QUERIES if whole else _QUERIES)[bool(shuffle)]
    with raw_connection(session).cursor() as cur, cur.copy(query, params) as copy:
        for data in copy:
            pending += data
            while len(pending) >= start + block:
                yield _batch(pending[start : start + block], dtype, shape, run_id)
                del pending[: start + block]
                start = 0
    if pending[-len(COPY_TRAILER) :] != COPY_TRAILER or pending[:start] != COPY_HEADER[:start]:
        raise DatabaseError(f"the stream of run {run_id}'s {split} images ended mid-row; retry")
    rest = pending[start : len(pending) - len(COPY_TRAILER)]
    if rest:
        yield _batch(rest, dtype, shape, run_id)


def _batch(raw: bytearray, dtype: np.dtype, shape: tuple[int, int, int], run_id: int) -> Batch:
    if len(raw) % dtype.itemsize:
        raise DatabaseError(
            f"an image of run {run_id} is not {shape} pixels; run `signdb db check`"
        )
    rows = np.frombuffer(raw, dtype=dtype)
    sizes = dtype["pixels"].shape[0]
    if not (np.all(rows["fields"] == 3) and np.all(rows["pixels_size"] == sizes)):
        raise DatabaseError(
            f"an image of run {run_id} is not {shape} pixels; run `signdb db check`"
        )
    return Batch(
        ids=rows["id"].astype(np.int64),
        labels=rows["label"].astype(np.int64),
        pixels=rows["pixels"].reshape(len(rows), *shape),
    )
