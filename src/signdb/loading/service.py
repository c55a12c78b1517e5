"""``signdb load``: images from any supported input into a dataset.

The service takes an engine, owns its transactions and returns a plain
result; it never prints. Progress is reported through an optional callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from signdb.data.formats import Input, open_input
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample
from signdb.db.engine import transaction
from signdb.errors import InputError, InvalidArgument
from signdb.results import Result
from signdb.store import datasets as ds_store
from signdb.store import images as image_store

LOAD_BATCH = 256


@dataclass
class LoadResult(Result):
    """What a load did: images added, duplicates skipped, inputs rejected (with reasons)."""

    dataset: str
    added: int = 0
    skipped_duplicates: int = 0
    rejected: int = 0
    images: int = 0
    rejections: list[Rejection] = field(default_factory=list)


def load_dataset(
    engine: Engine,
    path: str | Path,
    name: str,
    prep: Preprocessing,
    *,
    strict: bool = False,
    workers: int = 2,
    batch_size: int = LOAD_BATCH,
    progress: Callable[[int], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    on_open: Callable[[Input], None] | None = None,
) -> LoadResult:
    """Load images from ``path`` into dataset ``name``.

    Default mode commits every batch: a killed load keeps what it committed,
    and a re-run adds exactly the rest (identity is the pixels' sha256).
    Rejected inputs are skipped, counted and passed to ``on_reject``.
    ``strict`` runs in one transaction and aborts, writing nothing, on the
    first rejected input. ``progress(1)`` is called per input read;
    ``on_open(input)`` once the input is opened (``input.count()`` sizes a bar).
    """
    # Checked before the input is opened, which may unpack an archive.
    _preflight(engine, name, prep, batch_size)
    with open_input(path) as src:
        if on_open is not None:
            on_open(src)
        stream = src.samples(prep, workers=workers)
        try:
            return load_samples(
                engine,
                stream,
                name,
                prep,
                strict=strict,
                batch_size=batch_size,
                progress=progress,
                on_reject=on_reject,
                origin=str(path),
            )
        finally:
            # On an error the decoding pool is shut down now, not whenever the
            # traceback that keeps the generator alive is collected.
            stream.close()


def load_samples(
    engine: Engine,
    items: Iterable[Sample | Rejection],
    name: str,
    prep: Preprocessing,
    *,
    strict: bool = False,
    batch_size: int = LOAD_BATCH,
    progress: Callable[[int], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    origin: str = "the input",
) -> LoadResult:
    """Write already-decoded ``items`` (made with ``prep``) into dataset ``name``.

    The writing half of :func:`load_dataset`, with the same transaction rules;
    ``origin`` names the input in the error raised when nothing was loaded.
    """
    _preflight(engine, name, prep, batch_size)
    result = LoadResult(dataset=name)
    batches = _batches(iter(items), batch_size, result, strict, progress, on_reject)
    if strict:
        _write_in_one_transaction(engine, batches, name, prep, result)
    else:
        _write_batch_per_transaction(engine, batches, name, prep, result)

    if result.added + result.skipped_duplicates == 0:
        first = result.rejections[0] if result.rejections else None
        detail = f" (first: {first.source}: {first.reason})" if first else ""
        raise InputError(
            f"nothing was loaded from {origin}: {result.rejected} input(s) rejected{detail}"
        )
    with transaction(engine, "counting images") as session:
        result.images = ds_store.count_images(session, ds_store.get_dataset(session, name).id)
    return result


def _preflight(engine: Engine, name: str, prep: Preprocessing, batch_size: int) -> None:
    ds_store.check_name(name)
    prep.validate()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch size must be a positive integer, got {batch_size!r}")
    with transaction(engine, "looking up the dataset") as session:
        # Fail on mismatched preprocessing before decoding a single file.
        existing = ds_store.find_dataset(session, name)
        if existing is not None:
            ds_store.check_preprocessing(existing, prep)


def _batches(
    stream: Iterator[Sample | Rejection],
    batch_size: int,
    result: LoadResult,
    strict: bool,
    progress: Callable[[int], None] | None,
    on_reject: Callable[[Rejection], None] | None,
) -> Iterator[list[Sample]]:
    """Valid samples in batches; rejections are recorded (or, when strict, raised)."""
    batch: list[Sample] = []
    for item in stream:
        if progress:
            progress(1)
        if isinstance(item, Rejection):
            result.rejected += 1
            result.rejections.append(item)
            if strict:
                raise InputError(
                    f"{item.source}: {item.reason}; --strict stops at the first rejected input "
                    "and writes nothing (drop --strict to skip bad inputs)"
                )
            if on_reject:
                on_reject(item)
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_batch_per_transaction(
    engine: Engine,
    batches: Iterator[list[Sample]],
    name: str,
    prep: Preprocessing,
    result: LoadResult,
) -> None:
    dataset = None
    for batch in batches:
        with transaction(engine, "writing images") as session:
            # A batch need not wait for its commit to reach the disk: a server
            # crash can lose at most the last few batches, and the re-run that
            # any interruption calls for adds them back. The barrier below makes
            # everything durable before the load reports success.
            image_store.commit_asynchronously(session)
            # Created with the first batch, so a load that rejects everything
            # leaves no empty dataset behind.
            dataset = dataset or ds_store.get_or_create_dataset(session, name, prep)
            added = image_store.insert_samples(session, dataset, batch)
        result.added += added
        result.skipped_duplicates += len(batch) - added
    if dataset is not None:
        with transaction(engine, "making the load durable") as session:
            image_store.durability_barrier(session)


def _write_in_one_transaction(
    engine: Engine,
    batches: Iterator[list[Sample]],
    name: str,
    prep: Preprocessing,
    result: LoadResult,
) -> None:
    with transaction(engine, "writing images") as session:
        dataset = None
        for batch in batches:
            dataset = dataset or ds_store.get_or_create_dataset(session, name, prep)
            added = image_store.insert_samples(session, dataset, batch)
            result.added += added
            result.skipped_duplicates += len(batch) - added
