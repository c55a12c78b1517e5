"""What the benchmarks share: a dataset grown tenfold from shifted copies, and the result row."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from signdb.data import Sample
from signdb.data.preprocess import Preprocessing, pixels_sha256
from signdb.db.engine import transaction
from signdb.store import datasets as ds_store
from signdb.store import images as image_store

SHIFTS = range(1, 10)


def enlarge(engine: Engine, source_name: str, big_name: str, prep: Preprocessing) -> int:
    """Dataset ``big_name``: every image of ``source_name`` and its copies shifted right by
    1..9 pixels, with the source's classes. Returns its image count (a re-run adds nothing)."""
    with transaction(engine, "reading the dataset to copy") as session:
        source = ds_store.get_dataset(session, source_name)
        names = ds_store.class_names(session, source.id)
        rows = session.execute(
            text("SELECT label, pixels, source FROM signdb.images WHERE dataset_id = :d"),
            {"d": source.id},
        ).all()
        big = ds_store.get_or_create_dataset(session, big_name, prep)
        ds_store.insert_classes(session, big.id, names)
    labels = {str(label): label for label in names}
    for shift in (0, *SHIFTS):
        samples = []
        for label, pixels, where in rows:
            moved = np.roll(np.frombuffer(pixels, np.uint8).reshape(prep.shape), shift, axis=1)
            moved = np.ascontiguousarray(moved)
            samples.append(Sample(f"{where}#roll{shift}", str(label), moved, pixels_sha256(moved)))
        with transaction(engine, "writing shifted copies") as session:
            image_store.insert_samples(session, big, samples, labels)
    with transaction(engine) as session:
        return ds_store.count_images(session, big.id)


def row(benchmark: str, metric: str, value: Any, unit: str, goal: str = "", ok: Any = None):
    """One row of a metric/value/unit/goal result table."""
    return {
        "benchmark": benchmark,
        "metric": metric,
        "value": value,
        "unit": unit,
        "goal": goal,
        "ok": ok,
    }
