"""Reads and writes of ``signdb.datasets`` and the per-dataset counts. No commits here."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from signdb.data.preprocess import Preprocessing
from signdb.data.splits import (
    SPLITS,
    SplitPlan,
    check_fractions,
    check_mode,
    plan_split,
)
from signdb.db.schema import classes, datasets, images
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
    class_names: dict[int, str] = field(default_factory=dict)
    splits: dict[str, dict[int, int]] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)  # the SplitPlan the counts follow

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "images": self.images,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "classes": [
                {
                    "label": label,
                    "name": self.class_names.get(label, str(label)),
                    "images": n,
                    **{s: self.splits.get(s, {}).get(label, 0) for s in self.splits},
                }
                for label, n in sorted(self.labels.items())
            ],
            "preprocessing": self.preprocessing,
        }
        if self.splits:
            out["split"] = self.split
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


def lock_dataset(session: Session, dataset_id: int) -> None:
    """Serialise loads into one dataset while they assign labels to new class names."""
    session.execute(
        text("SELECT 1 FROM signdb.datasets WHERE id = :d FOR UPDATE"), {"d": dataset_id}
    )


def class_labels(session: Session, dataset_id: int) -> dict[str, int]:
    """The dataset's classes as name -> label."""
    rows = session.execute(
        select(classes.c.name, classes.c.label).where(classes.c.dataset_id == dataset_id)
    )
    return {name: label for name, label in rows}


def class_names(session: Session, dataset_id: int) -> dict[int, str]:
    """The dataset's classes as label -> name, by label."""
    rows = session.execute(
        select(classes.c.label, classes.c.name)
        .where(classes.c.dataset_id == dataset_id)
        .order_by(classes.c.label)
    )
    return {label: name for label, name in rows}


def insert_classes(session: Session, dataset_id: int, new: dict[int, str]) -> None:
    if new:
        session.execute(
            insert(classes),
            [{"dataset_id": dataset_id, "label": k, "name": v} for k, v in sorted(new.items())],
        )


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


# The split of image i under a SplitPlan: the one rule that dataset summaries
# and run assignments share, equal to signdb.split_of for hash plans. The
# fraction u is computed once per image (OFFSET 0 keeps the planner from
# copying the expression into each comparison). Explicit casts: the driver may
# bind a Python int as int8 or numeric, and the SQL functions take integer and
# double precision.
SPLIT_SOURCE = """signdb.images i CROSS JOIN LATERAL (
        SELECT signdb.split_fraction(i.sha256, CAST(:seed AS integer)) AS u OFFSET 0) AS f"""
SPLIT_EXPRESSION = """
    CASE WHEN CAST(:fixed AS boolean) THEN
        CASE WHEN i.split = 'train' AND CAST(:carve AS boolean)
                  AND f.u < CAST(:vf AS double precision)
             THEN 'val' ELSE i.split END
         WHEN f.u < CAST(:tf AS double precision) THEN 'test'
         WHEN f.u < CAST(:tf AS double precision) + CAST(:vf AS double precision) THEN 'val'
         ELSE 'train' END"""


def split_params(plan: SplitPlan) -> dict[str, Any]:
    return {
        "fixed": plan.mode == "fixed",
        "carve": plan.carve_val,
        "seed": plan.seed,
        "tf": plan.test_fraction,
        "vf": plan.val_fraction,
    }


def fixed_split_coverage(
    session: Session, dataset_id: int, labels: Sequence[int] | None = None
) -> tuple[int, int, int]:
    """(images, images with a fixed split, fixed val images) of the dataset's ``labels``."""
    row = session.execute(
        text(
            "SELECT count(*), count(split), count(*) FILTER (WHERE split = 'val') "
            "FROM signdb.images WHERE dataset_id = :ds "
            "AND (CAST(:labels AS integer[]) IS NULL OR label = ANY(:labels))"
        ),
        {"ds": dataset_id, "labels": None if labels is None else list(labels)},
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def split_counts(session: Session, dataset_id: int, plan: SplitPlan) -> dict[str, dict[int, int]]:
    """Images per split and label under ``plan``."""
    rows = session.execute(
        text(
            f"SELECT {SPLIT_EXPRESSION} AS split, i.label, count(*) "  # noqa: S608 - constant
            f"FROM {SPLIT_SOURCE} WHERE i.dataset_id = :ds GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {**split_params(plan), "ds": dataset_id},
    )
    out: dict[str, dict[int, int]] = {split: {} for split in SPLITS}
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
    session: Session,
    name: str,
    *,
    mode: str | None = None,
    seed: int = 42,
    test_fraction: float = 0.15,
    val_fraction: float = 0.0,
) -> DatasetSummary:
    """Images per class, and per split under ``--split mode`` (no split counts when None)."""
    if mode is not None:
        # A bad flag is reported as such, whether or not the dataset exists.
        check_seed(seed)
        check_fractions(test_fraction, val_fraction)
        check_mode(mode)
    ds = get_dataset(session, name)
    labels = label_counts(session, ds.id)
    splits: dict[str, dict[int, int]] = {}
    plan_dict: dict[str, Any] = {}
    if mode is not None:
        total, with_split, fixed_val = fixed_split_coverage(session, ds.id)
        plan = plan_split(
            mode,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            images=total,
            with_split=with_split,
            fixed_val=fixed_val,
            what=f"dataset {name!r}",
        )
        splits, plan_dict = split_counts(session, ds.id, plan), plan.as_dict()
    return DatasetSummary(
        name=ds.name,
        images=sum(labels.values()),
        labels=labels,
        preprocessing=ds.preprocessing.as_dict(),
        class_names=class_names(session, ds.id),
        splits=splits,
        split=plan_dict,
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
