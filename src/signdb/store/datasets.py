"""Reads and writes of ``signdb.datasets`` and the per-dataset counts. No commits here."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from signdb.data.preprocess import Preprocessing
from signdb.data.splits import check_fraction
from signdb.db.schema import datasets, images
from signdb.errors import InputError, InvalidArgument, NotFound


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    preprocessing: Preprocessing
    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    images: int
    labels: dict[int, int]
    preprocessing: dict[str, Any]
    splits: dict[str, dict[int, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "images": self.images,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "preprocessing": self.preprocessing,
        }
        if self.splits:
            out["splits"] = {
                s: {str(k): v for k, v in sorted(c.items())} for s, c in self.splits.items()
            }
        return out


def check_name(name: str, what: str = "dataset name") -> str:
    """Names are stored literally; reject only what PostgreSQL text cannot hold or we cannot show."""
    if not name or not name.strip():
        raise InvalidArgument(f"the {what} is empty; pass a name like --dataset digits")
    if "\x00" in name:
        raise InvalidArgument(
            f"the {what} {name!r} contains a NUL byte, which PostgreSQL text cannot store"
        )
    if len(name) > 200:
        raise InvalidArgument(
            f"the {what} is {len(name)} characters long; use at most 200 characters"
        )
    return name


def _row_to_dataset(row: Any) -> Dataset:
    return Dataset(
        id=row.id,
        name=row.name,
        preprocessing=Preprocessing.from_dict(row.preprocessing),
        height=row.height,
        width=row.width,
        channels=row.channels,
    )


def get_dataset(session: Session, name: str) -> Dataset:
    found = find_dataset(session, name)
    if found is None:
        known = session.scalars(select(datasets.c.name).order_by(datasets.c.name).limit(10)).all()
        hint = (
            f"known datasets: {', '.join(map(repr, known))}"
            if known
            else "no dataset is loaded yet"
        )
        raise NotFound(
            f"no dataset named {name!r} ({hint}); load one with "
            f"`signdb load PATH --dataset {shlex.quote(name)}`"
        )
    return found


def find_dataset(session: Session, name: str) -> Dataset | None:
    row = session.execute(select(datasets).where(datasets.c.name == name)).one_or_none()
    return None if row is None else _row_to_dataset(row)


def check_preprocessing(existing: Dataset, prep: Preprocessing) -> Dataset:
    """``existing`` if its images were made with ``prep``; otherwise a clear error."""
    if existing.preprocessing != prep:
        have = existing.preprocessing
        raise InputError(
            f"dataset {existing.name!r} was loaded with --size {have.size} --color {have.color} "
            f"(resample {have.resample}), not --size {prep.size} --color {prep.color} "
            f"(resample {prep.resample}); load with the same options or choose another "
            "--dataset name"
        )
    return existing


def get_or_create_dataset(session: Session, name: str, prep: Preprocessing) -> Dataset:
    """The dataset called ``name``, created with ``prep`` if new; a clear error if ``prep`` differs."""
    check_name(name)
    height, width, channels = prep.shape
    # ON CONFLICT: two loads creating the same dataset at once both succeed.
    session.execute(
        insert(datasets)
        .values(
            name=name,
            preprocessing=prep.as_dict(),
            height=height,
            width=width,
            channels=channels,
        )
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return check_preprocessing(get_dataset(session, name), prep)


def count_images(session: Session, dataset_id: int) -> int:
    return session.scalar(select(func.count()).where(images.c.dataset_id == dataset_id)) or 0


def label_counts(session: Session, dataset_id: int) -> dict[int, int]:
    rows = session.execute(
        select(images.c.label, func.count())
        .where(images.c.dataset_id == dataset_id)
        .group_by(images.c.label)
        .order_by(images.c.label)
    )
    return {label: n for label, n in rows}


def split_counts(
    session: Session, dataset_id: int, seed: int, test_fraction: float
) -> dict[str, dict[int, int]]:
    check_seed(seed)
    check_fraction(test_fraction)
    rows = session.execute(
        text(
            # Explicit casts: the driver may bind a Python int as int8 or
            # numeric, and split_of(text, integer, double precision) must match.
            "SELECT signdb.split_of(sha256, CAST(:seed AS integer), "
            "CAST(:frac AS double precision)) AS split, label, count(*) "
            "FROM signdb.images WHERE dataset_id = :ds GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {"seed": seed, "frac": test_fraction, "ds": dataset_id},
    )
    out: dict[str, dict[int, int]] = {"train": {}, "test": {}}
    for split, label, n in rows:
        out[split][label] = n
    return out


def check_seed(seed: int) -> int:
    # signdb.split_of takes a PostgreSQL integer.
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**31) <= seed < 2**31:
        raise InvalidArgument(
            f"seed must be an integer between {-(2**31)} and {2**31 - 1}, got {seed!r}; "
            "pass e.g. --seed 42"
        )
    return seed


def summarize(
    session: Session, name: str, *, seed: int | None = None, test_fraction: float | None = None
) -> DatasetSummary:
    if seed is not None:
        # A bad flag is reported as such, whether or not the dataset exists.
        check_seed(seed)
        check_fraction(test_fraction)
    ds = get_dataset(session, name)
    labels = label_counts(session, ds.id)
    splits = split_counts(session, ds.id, seed, test_fraction) if seed is not None else {}
    return DatasetSummary(
        name=ds.name,
        images=sum(labels.values()),
        labels=labels,
        preprocessing=ds.preprocessing.as_dict(),
        splits=splits,
    )


def list_summaries(session: Session) -> list[DatasetSummary]:
    rows = session.execute(
        text(
            "SELECT d.name, d.preprocessing, i.label, count(i.id) "
            "FROM signdb.datasets d LEFT JOIN signdb.images i ON i.dataset_id = d.id "
            "GROUP BY d.name, d.preprocessing, i.label ORDER BY d.name, i.label"
        )
    )
    out: dict[str, DatasetSummary] = {}
    for name, prep, label, n in rows:
        summary = out.setdefault(name, DatasetSummary(name, 0, {}, prep))
        if label is not None:
            summary.labels[label] = n
    return [
        DatasetSummary(s.name, sum(s.labels.values()), s.labels, s.preprocessing)
        for s in out.values()
    ]
