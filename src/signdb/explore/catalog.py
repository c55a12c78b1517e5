"""Sweeps, datasets, the leaderboard and single images, as their pages show them.

>>> sorted(dataset_detail(db.engine, "shapes")["samples"])
['circle', 'square']
>>> _ = db.evaluate(db.runs()[-1]["run_id"])  # the leaderboard ranks evaluated runs
>>> board = leaderboard(db.engine)
>>> board["boards"][0]["dataset"]
'shapes'
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb.db import sweep_storage
from signdb.db.engine import transaction
from signdb.errors import NotFound, SweepError
from signdb.store import datasets as ds_store
from signdb.store import images as image_store
from signdb.store import listing, thumbnails
from signdb.store import sweeps as sweep_store
from signdb.sweeps import show

SAMPLES_PER_CLASS = 8
EXAMPLE_SOURCES = 5


def sweep_detail(engine: Engine, name: str) -> dict[str, Any]:
    """``signdb sweep show NAME`` and every trial's row of ``sweep_trials``."""
    result = show(engine, name).as_dict()
    with transaction(engine, f"reading the trials of sweep {name!r}") as session:
        result["trial_rows"] = sweep_store.trial_rows(session, name)
    return result


def list_sweeps(engine: Engine) -> list[str]:
    with transaction(engine, "listing sweeps") as session:
        if not sweep_storage.schema_exists(session.connection()):
            raise SweepError("the database has no sweep tables; run `signdb db upgrade`")
        return sweep_store.list_names(session)


def dataset_detail(engine: Engine, name: str) -> dict[str, Any]:
    """``signdb datasets show NAME`` (classes with counts per split under the default
    split), a few image ids per class, example sources and the number of runs."""
    with transaction(engine, f"reading dataset {name!r}") as session:
        summary = ds_store.summarize(session, name, mode="auto").as_dict()
        ds = ds_store.get_dataset(session, name)
        names = ds_store.class_names(session, ds.id)
        samples = thumbnails.sample_ids(session, ds.id, SAMPLES_PER_CLASS)
        sources = thumbnails.sources(session, ds.id, EXAMPLE_SOURCES)
        runs = listing.count_runs(session, listing.RunFilter(dataset=name))
    return {
        **summary,
        "samples": {names.get(label, str(label)): ids for label, ids in samples.items()},
        "sources": sources,
        "runs": runs,
    }


def list_datasets(engine: Engine) -> list[dict[str, Any]]:
    with transaction(engine, "listing datasets") as session:
        return [s.as_dict() for s in ds_store.list_summaries(session)]


def leaderboard(engine: Engine, dataset: str | None = None, *, top: int = 20) -> dict[str, Any]:
    """The ``leaderboard`` view's best ``top`` runs of each dataset and class set."""
    with transaction(engine, "reading the leaderboard") as session:
        if dataset is not None:
            ds_store.get_dataset(session, dataset)  # NotFound names it
        rows = listing.leaderboard(session, dataset, top)
        names = {
            d: ds_store.class_names(session, ds_store.get_dataset(session, d).id)
            for d in {r["dataset"] for r in rows}
        }
    boards: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    for row in rows:
        key = (row["dataset"], tuple(row["classes"]))
        board = boards.setdefault(
            key,
            {
                "dataset": row["dataset"],
                "classes": row["classes"],
                "class_names": [names[row["dataset"]].get(c, str(c)) for c in row["classes"]],
                "runs": [],
            },
        )
        board["runs"].append(row)
    return {"boards": list(boards.values())}


def image_png(engine: Engine, image_id: int) -> bytes:
    """One stored image as PNG bytes, exactly its stored pixels."""
    from PIL import Image

    with transaction(engine, f"reading image {image_id}") as session:
        found = image_store.image_pixels(session, [image_id])
    if image_id not in found:
        raise NotFound(f"no image with id {image_id}")
    pixels, height, width, channels, _ = found[image_id]
    array = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, channels)
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if channels == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()
