"""``signdb load``: images from any supported input into a dataset.

The service takes an engine, owns its transactions and returns a plain
result; it never prints. Progress is reported through optional callbacks.

Classes: the input's class keys (folder names, label values) are resolved to
labels (:func:`signdb.data.labels.resolve_classes`) once before anything is
decoded, so a conflict with the dataset's classes fails fast, and again under
the dataset's row lock in the transaction that writes the first batch, which
also writes the new classes: concurrent loads never give one label two names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from signdb.data.formats import Input, open_input
from signdb.data.labels import ClassMap, resolve_classes
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample
from signdb.db.engine import transaction
from signdb.errors import InputError, InvalidArgument
from signdb.results import Result
from signdb.store import datasets as ds_store
from signdb.store import images as image_store

#: Images per transaction, unless they reach BATCH_BYTES first. Each batch costs
#: the server a commit and a probe of the identities; 1,024 gray 64x64 images are
#: 4 MiB, and a killed load loses at most one batch of work.
LOAD_BATCH = 1024
#: Pixel bytes per transaction at most, so large RGB images make smaller batches.
BATCH_BYTES = 16 << 20


@dataclass
class LoadResult(Result):
    """What a load did: images added, duplicates skipped, inputs rejected (with reasons).

    >>> result = db.load(example_images, dataset="shapes", size=16)
    >>> result.added, result.skipped_duplicates, result.classes
    (0, 24, ['circle', 'square'])
    >>> sorted(result.as_dict())[:3]  # the CLI's --json object
    ['added', 'classes', 'dataset']
    """

    dataset: str
    added: int = 0
    skipped_duplicates: int = 0
    rejected: int = 0
    images: int = 0
    classes: list[str] = field(default_factory=list)  # the dataset's class names, by label
    rejections: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_dataset(
    engine: Engine,
    path: str | Path,
    name: str,
    prep: Preprocessing,
    *,
    class_names: Sequence[str] | None = None,
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
    first rejected input. ``class_names`` names integer labels (line i of
    ``--class-names`` names label i). ``progress(1)`` is called per input read;
    ``on_open(input)`` once the input is opened (``input.count()`` sizes a bar).
    """
    # Checked before the input is opened, which may unpack an archive.
    _preflight(engine, name, prep, batch_size)
    with open_input(path) as src:
        if on_open is not None:
            on_open(src)
        index_names = list(class_names) if class_names is not None else src.index_names()
        stream = src.samples(prep, workers=workers)
        try:
            return load_samples(
                engine,
                stream,
                name,
                prep,
                class_keys=src.class_keys(),
                index_names=index_names,
                strict=strict,
                batch_size=batch_size,
                progress=progress,
                on_reject=on_reject,
                origin=str(path),
                warnings=src.warnings(),
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
    class_keys: Iterable[str],
    index_names: Sequence[str] | None = None,
    strict: bool = False,
    batch_size: int = LOAD_BATCH,
    progress: Callable[[int], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    origin: str = "the input",
    warnings: Sequence[str] = (),
) -> LoadResult:
    """Write already-decoded ``items`` (made with ``prep``) into dataset ``name``.

    The writing half of :func:`load_dataset`, with the same transaction rules;
    ``class_keys`` are every class key the items use. ``origin`` names the
    input in errors.
    """
    keys = set(class_keys)
    existing = _preflight(engine, name, prep, batch_size)
    resolve_classes(keys, existing=existing, index_names=index_names, origin=origin)
    result = LoadResult(dataset=name, warnings=list(warnings))
    batches = _batches(iter(items), batch_size, result, strict, progress, on_reject)
    writer = _Writer(name, prep, keys, index_names, origin)
    if strict:
        with transaction(engine, "writing images") as session:
            for batch in batches:
                writer.write(session, batch, result)
    else:
        _write_batch_per_transaction(engine, batches, writer, result)

    if result.added + result.skipped_duplicates == 0:
        first = result.rejections[0] if result.rejections else None
        detail = f" (first: {first.source}: {first.reason})" if first else ""
        raise InputError(
            f"nothing was loaded from {origin}: {result.rejected} input(s) rejected{detail}"
        )
    with transaction(engine, "counting images") as session:
        dataset = ds_store.get_dataset(session, name)
        result.images = ds_store.count_images(session, dataset.id)
        result.classes = list(ds_store.class_names(session, dataset.id).values())
    return result


def _preflight(engine: Engine, name: str, prep: Preprocessing, batch_size: int) -> dict[str, int]:
    """Check the request; the dataset's existing classes (name -> label), if it exists."""
    ds_store.check_name(name)
    prep.validate()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch size must be a positive integer, got {batch_size!r}")
    with transaction(engine, "looking up the dataset") as session:
        # Fail on mismatched preprocessing before decoding a single file.
        existing = ds_store.find_dataset(session, name)
        if existing is None:
            return {}
        ds_store.check_preprocessing(existing, prep)
        return ds_store.class_labels(session, existing.id)


@dataclass
class _Writer:
    """Writes batches into the dataset; the first one also creates it and its new classes."""

    name: str
    prep: Preprocessing
    keys: set[str]
    index_names: Sequence[str] | None
    origin: str
    dataset: ds_store.Dataset | None = None
    classes: ClassMap | None = None

    def write(self, session: Session, batch: list[Sample], result: LoadResult) -> None:
        if self.dataset is None:
            # Created with the first batch, so a load that rejects everything
            # leaves no empty dataset behind.
            self.dataset = ds_store.get_or_create_dataset(session, self.name, self.prep)
            ds_store.lock_dataset(session, self.dataset.id)
            self.classes = resolve_classes(
                self.keys,
                existing=ds_store.class_labels(session, self.dataset.id),
                index_names=self.index_names,
                origin=self.origin,
            )
            ds_store.insert_classes(session, self.dataset.id, self.classes.new)
        assert self.classes is not None
        added = image_store.insert_samples(session, self.dataset, batch, self.classes.labels)
        result.added += added
        result.skipped_duplicates += len(batch) - added


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
    size = 0
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
        size += item.pixels.nbytes
        if len(batch) >= batch_size or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _write_batch_per_transaction(
    engine: Engine, batches: Iterator[list[Sample]], writer: _Writer, result: LoadResult
) -> None:
    for batch in batches:
        with transaction(engine, "writing images") as session:
            # A batch need not wait for its commit to reach the disk: a server
            # crash can lose at most the last few batches, and the re-run that
            # any interruption calls for adds them back. The barrier below makes
            # everything durable before the load reports success.
            image_store.commit_asynchronously(session)
            writer.write(session, batch, result)
    if writer.dataset is not None:
        with transaction(engine, "making the load durable") as session:
            image_store.durability_barrier(session)
