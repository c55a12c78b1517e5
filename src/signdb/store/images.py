"""Writes of ``signdb.images`` and the one streaming read of a run's images. No commits here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from signdb.data.samples import Sample
from signdb.errors import InputError, InvalidArgument
from signdb.store.copy import copy_rows, raw_connection
from signdb.store.datasets import Dataset

# Binary COPY types of: label, pixels, height, width, channels, sha256, source, split.
_TYPES = ["int4", "bytea", "int2", "int2", "int2", "text", "text", "text"]
_COLUMNS = "label, pixels, height, width, channels, sha256, source, split"


def insert_samples(
    session: Session, dataset: Dataset, samples: Sequence[Sample], labels: Mapping[str, int]
) -> int:
    """COPY a batch into the dataset; images whose pixels are already there are skipped.

    ``labels`` maps each sample's class key to its label (see
    :func:`signdb.data.labels.resolve_classes`).

    Returns how many rows were added. Identity is the pixels' sha256, so a
    re-run, or a run after a killed one, adds exactly what is missing. Of
    identical images within a batch the first (in input order) is kept.

    The fast path asks which identities exist, then COPYs only the new rows
    straight into ``signdb.images``: one write per image, and none at all on a
    re-load. A concurrent load may commit the same image in between; the unique
    index then refuses the COPY, and the batch is redone through a staging
    table with ``INSERT ... ON CONFLICT DO NOTHING``.
    """
    if not samples:
        return 0
    _check_shapes(dataset, samples)
    conn = raw_connection(session)
    # One probe of the unique (dataset_id, sha256) index per image. LIMIT keeps the
    # planner from flattening the lookup into a join: on a table that grew since it
    # was last analysed, it would scan every row of the dataset per batch instead,
    # and a 50,000-image load would spend most of its time here.
    existing = {
        sha
        for (sha,) in conn.execute(
            "SELECT s.sha FROM unnest(%s::text[]) AS s(sha), LATERAL ("
            "SELECT 1 FROM signdb.images i WHERE i.dataset_id = %s AND i.sha256 = s.sha LIMIT 1"
            ") AS hit",
            [[s.sha256 for s in samples], dataset.id],
        )
    }
    new: dict[str, Sample] = {}
    for s in samples:
        if s.sha256 not in existing:
            new.setdefault(s.sha256, s)
    if not new:
        return 0
    # Sorted by identity: concurrent loaders then take the unique-index
    # locks in the same order and wait for each other instead of deadlocking.
    rows = [new[sha] for sha in sorted(new)]
    conn.execute("SAVEPOINT signdb_copy")
    try:
        copy_rows(
            conn,
            f"COPY signdb.images (dataset_id, {_COLUMNS}) FROM STDIN (FORMAT BINARY)",
            ["int4", *_TYPES],
            ((dataset.id, *_values(s, labels)) for s in rows),
        )
    except psycopg.errors.UniqueViolation:
        conn.execute("ROLLBACK TO SAVEPOINT signdb_copy")
        return _insert_via_staging(conn, dataset, rows, labels)
    conn.execute("RELEASE SAVEPOINT signdb_copy")
    return len(rows)


def _values(s: Sample, labels: Mapping[str, int]) -> tuple:
    return (labels[s.class_key], s.pixels.tobytes(), *s.pixels.shape, s.sha256, s.source, s.split)


def _check_shapes(dataset: Dataset, samples: Sequence[Sample]) -> None:
    shape = (dataset.height, dataset.width, dataset.channels)
    for s in samples:
        # The table only checks bytes == h*w*c; a 32x128 image must not pass as 64x64.
        if s.pixels.shape != shape:
            raise InputError(
                f"{s.source}: pixels of shape {s.pixels.shape} do not fit dataset "
                f"{dataset.name!r}, whose images are {shape}; load with the dataset's options"
            )


def _insert_via_staging(
    conn: psycopg.Connection, dataset: Dataset, rows: list[Sample], labels: Mapping[str, int]
) -> int:
    """The race-safe path: COPY into a temp table, then move what is still missing."""
    # A temp table lives as long as the pooled connection, so it is created
    # once per connection; ON COMMIT empties it, and so does the TRUNCATE for
    # a strict load, which writes several batches in one transaction.
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS signdb_images_staging "
        "(label int, pixels bytea, height smallint, width smallint, channels smallint, "
        "sha256 text, source text, split text) ON COMMIT DELETE ROWS"
    )
    conn.execute("TRUNCATE signdb_images_staging")
    copy_rows(
        conn,
        f"COPY signdb_images_staging ({_COLUMNS}) FROM STDIN (FORMAT BINARY)",
        _TYPES,
        (_values(s, labels) for s in rows),
    )
    # rows are distinct and sorted by sha256; ORDER BY keeps the lock order.
    cur = conn.execute(
        f"INSERT INTO signdb.images (dataset_id, {_COLUMNS}) "  # noqa: S608 - constant columns
        f"SELECT %s, {_COLUMNS} FROM signdb_images_staging ORDER BY sha256 "
        "ON CONFLICT (dataset_id, sha256) DO NOTHING",
        [dataset.id],
    )
    return cur.rowcount


@dataclass(frozen=True)
class ImageChunk:
    """Consecutive rows of a run's images, as numpy arrays."""

    ids: np.ndarray  # int64
    splits: list[str]
    labels: np.ndarray  # int64, the true labels
    sha256: list[str]
    pixels: np.ndarray  # uint8 (n, h, w, c)


_RUN_IMAGES = (
    "SELECT i.id, ri.split, i.label, i.sha256, i.pixels FROM signdb.run_images ri "
    "JOIN signdb.images i ON i.id = ri.image_id "
    "WHERE ri.run_id = :run AND ri.split = ANY(:splits) "
)
_ID_ORDER = "i.id"
# The shuffled order of one epoch; order_key() is its Python twin for cached data.
_SHUFFLED_ORDER = "md5(i.sha256 || ':' || CAST(:seed AS text) || ':' || CAST(:epoch AS text)), i.id"
_BY_ID = text(_RUN_IMAGES + f"ORDER BY {_ID_ORDER} OFFSET :offset")
_SHUFFLED = text(_RUN_IMAGES + f"ORDER BY {_SHUFFLED_ORDER} OFFSET :offset")


def _sharded(order: str) -> TextClause:
    """Every ``count``-th row, from row ``index`` on, of the same order: one shard of it.

    The rows are numbered over the light columns only; pixels are joined in for
    the shard's rows alone, so a shard reads and sends its own images and no others.
    """
    return text(
        "SELECT i.id, n.split, i.label, i.sha256, i.pixels FROM ("  # noqa: S608 - constants
        f"SELECT i.id, ri.split, row_number() OVER (ORDER BY {order}) - 1 AS rn "
        "FROM signdb.run_images ri JOIN signdb.images i ON i.id = ri.image_id "
        "WHERE ri.run_id = :run AND ri.split = ANY(:splits)"
        ") AS n JOIN signdb.images i ON i.id = n.id "
        "WHERE n.rn % :count = :index ORDER BY n.rn OFFSET :offset"
    )


_SHARDED = {False: _sharded(_ID_ORDER), True: _sharded(_SHUFFLED_ORDER)}


def stream_run_images(
    session: Session,
    run_id: int,
    splits: Sequence[str],
    shape: tuple[int, int, int],
    *,
    chunk: int,
    shuffle: tuple[int, int] | None = None,
    offset: int = 0,
    shard: tuple[int, int] | None = None,
) -> Iterator[ImageChunk]:
    """A run's images of ``splits``, ``chunk`` rows at a time, through a server-side cursor.

    In id order, or with ``shuffle=(seed, epoch)`` in that epoch's shuffled
    order; ``offset`` skips rows already read (a reader resuming after a lost
    connection). The one read that training, evaluation and the API share.

    ``shard=(index, count)`` keeps the rows at positions ``index``,
    ``index + count``, ... of that order (``signdb.torch.RunDataset``'s
    DataLoader workers and ranks): ``count`` readers with indexes ``0 .. count-1``
    see every row exactly once between them, and ``offset`` counts the shard's rows.
    """
    query = _BY_ID if shuffle is None else _SHUFFLED
    seed, epoch = shuffle or (0, 0)
    params = {"run": run_id, "splits": list(splits), "seed": seed, "epoch": epoch, "offset": offset}
    if shard is not None:
        query = _SHARDED[shuffle is not None]
        params["index"], params["count"] = _check_shard(shard)
    result = session.execute(
        query, params, execution_options={"stream_results": True, "yield_per": chunk}
    )
    for rows in result.partitions(chunk):
        n = len(rows)
        pixels = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.uint8)
        yield ImageChunk(
            ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
            splits=[r[1] for r in rows],
            labels=np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
            sha256=[r[3] for r in rows],
            pixels=pixels.reshape(n, *shape),
        )


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
    if not ok or count < 1 or not 0 <= index < count:
        raise InvalidArgument(
            f"shard must be (index, count) with 0 <= index < count, got {tuple(shard)!r}"
        )
    return index, count


def image_pixels(session: Session, image_ids: Sequence[int]) -> dict[int, tuple]:
    """``{id: (pixels, height, width, channels, source)}`` for a few images (report galleries)."""
    rows = session.execute(
        text(
            "SELECT id, pixels, height, width, channels, source FROM signdb.images "
            "WHERE id = ANY(:ids)"
        ),
        {"ids": list(image_ids)},
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def commit_asynchronously(session: Session) -> None:
    """This transaction's commit need not wait for the WAL flush (see the loader)."""
    session.execute(text("SET LOCAL synchronous_commit = off"))


def durability_barrier(session: Session) -> None:
    """Give the transaction an id, so its synchronous commit flushes the WAL to here,
    every earlier asynchronous commit included."""
    session.execute(text("SELECT pg_current_xact_id()"))


def run_split_index(
    session: Session, run_id: int, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ids, labels, sha256) of a run's ``split`` in id order: its rows without the pixels."""
    rows = session.execute(
        text(
            "SELECT i.id, i.label, i.sha256 FROM signdb.run_images ri "
            "JOIN signdb.images i ON i.id = ri.image_id "
            "WHERE ri.run_id = :run AND ri.split = :split ORDER BY i.id"
        ),
        {"run": run_id, "split": split},
    ).all()
    n = len(rows)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    labels = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    return ids, labels, [r[2] for r in rows]


def stream_pixels(
    session: Session,
    shape: tuple[int, int, int],
    *,
    chunk: int,
    dataset_id: int | None = None,
    labels: Sequence[int] = (),
    image_ids: Sequence[int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, uint8 pixels) in id order: a dataset's images of ``labels``, or ``image_ids``."""
    if image_ids is not None:
        query = text("SELECT id, pixels FROM signdb.images WHERE id = ANY(:ids) ORDER BY id")
        params: dict = {"ids": list(image_ids)}
    else:
        query = text(
            "SELECT id, pixels FROM signdb.images WHERE dataset_id = :d AND label = ANY(:l) "
            "ORDER BY id"
        )
        params = {"d": dataset_id, "l": list(labels)}
    result = session.execute(
        query, params, execution_options={"stream_results": True, "yield_per": chunk}
    )
    for rows in result.partitions():
        n = len(rows)
        pixels = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8)
        yield np.fromiter((r[0] for r in rows), np.int64, count=n), pixels.reshape(n, *shape)
