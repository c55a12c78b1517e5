"""One run, as its page shows it: facts, lifecycle, metrics, and each evaluated split.

Everything is read; nothing is evaluated or written (a viewer's request runs
in a read-only transaction). A split that was never evaluated simply has no
entry under ``evaluations``.

>>> run_id = db.runs()[-1]["run_id"]
>>> _ = db.evaluate(run_id)
>>> detail = run_detail(db.engine, run_id)
>>> detail["run"]["model"], sorted(detail["metrics"])[:1], "test" in detail["evaluations"]
('softmax', ['cost'], True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.store import datasets as ds_store
from signdb.store import listing, summaries
from signdb.store import metrics as metric_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store
from signdb.store import scores as score_store

SPLITS = ("test", "val", "train", "all")
GALLERY = 24
CURVE_POINTS = 400

#: What the run page adds to ``run_summary``'s columns from the run row.
_LIFECYCLE = ("stored_status", "heartbeat_at", "host", "trainer", "test_fraction")


def run_detail(engine: Engine, run_id: int) -> dict[str, Any]:
    """A run's facts, lifecycle, metric names with their point counts, and every
    evaluated split's scores, confusion, calibration, curves and worst mistakes."""
    with transaction(engine, f"reading run {run_id}") as session:
        record = run_store.get_run(session, run_id)  # NotFound names the run
        summary = summaries.run_summary(session, run_id) or {}
        names = ds_store.class_names(session, record.dataset_id)
        metrics = metric_store.metric_points(session, run_id)
        evaluations = {
            split: found
            for split in SPLITS
            if (found := _evaluation(session, run_id, split, names)) is not None
        }
        extra = listing.run_extras(session, run_id)
    facts = {
        **summary,
        **{key: getattr(record, key) for key in _LIFECYCLE},
        **extra,
        "duration_seconds": _seconds(record),
    }
    return {
        "run": facts,
        "classes": [{"label": c, "name": names.get(c, str(c))} for c in record.classes],
        "metrics": metrics,
        "evaluations": evaluations,
    }


def run_scores(engine: Engine, run_id: int, split: str = "test") -> dict[str, Any]:
    """``run_scores`` of one split: each metric's value and 95% interval."""
    _check_split(split)
    with transaction(engine, f"reading the scores of run {run_id}") as session:
        run_store.get_run(session, run_id)
        return {
            "run_id": run_id,
            "split": split,
            "scores": score_store.run_scores(session, run_id, split),
        }


def run_confusion(engine: Engine, run_id: int, split: str = "test") -> dict[str, Any]:
    """The confusion matrix of one split, cells with class names."""
    _check_split(split)
    with transaction(engine, f"reading the confusion matrix of run {run_id}") as session:
        record = run_store.get_run(session, run_id)
        names = ds_store.class_names(session, record.dataset_id)
        cells = _cells(prediction_store.confusion(session, run_id, split), names)
    return {"run_id": run_id, "split": split, "classes": record.classes, "cells": cells}


def _evaluation(
    session: Session, run_id: int, split: str, names: dict[int, str]
) -> dict[str, Any] | None:
    scores = score_store.run_scores(session, run_id, split)
    # "all" is a split of its own only when evaluated as such (its predictions are the
    # other splits'); runs evaluated before scores existed have predictions only.
    if not scores and (
        split == "all" or not prediction_store.count_predictions(session, run_id, split)
    ):
        return None
    cells = prediction_store.confusion(session, run_id, split)
    areas = score_store.class_scores(session, run_id, split)
    wrong = prediction_store.misclassified(session, run_id, split, GALLERY)
    return {
        "scores": scores,
        "confusion": _cells(cells, names),
        "calibration": score_store.calibration(session, run_id, split),
        "curves": _curves(score_store.class_curves(session, run_id, split), areas),
        "misclassified": [
            {
                "image_id": w["image_id"],
                "label": w["label"],
                "actual_name": names.get(w["label"], str(w["label"])),
                "predicted": w["predicted"],
                "predicted_name": names.get(w["predicted"], str(w["predicted"])),
                "probability": w["probability"],
                "source": w["source"],
            }
            for w in wrong
        ],
        "misclassified_total": prediction_store.count_misclassified(session, run_id, split),
    }


def _cells(cells: list[tuple[int, int, int]], names: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {
            "actual": a,
            "predicted": p,
            "count": n,
            "actual_name": names.get(a, str(a)),
            "predicted_name": names.get(p, str(p)),
        }
        for a, p, n in cells
    ]


def _curves(
    points: list[dict[str, Any]], areas: dict[tuple[int, str], float | None]
) -> list[dict[str, Any]]:
    """Each class's ROC and precision-recall points (at most CURVE_POINTS, ends kept)."""
    by_class: dict[int, list[dict[str, Any]]] = {}
    for point in points:
        by_class.setdefault(point["label"], []).append(point)
    out = []
    for label, rows in by_class.items():
        keep = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), CURVE_POINTS)).astype(int))
        chosen = [rows[i] for i in keep]
        out.append(
            {
                "label": label,
                "name": rows[0]["class_name"],
                "roc_auc": areas.get((label, "roc_auc")),
                "average_precision": areas.get((label, "average_precision")),
                **{
                    key: [row[key] for row in chosen]
                    for key in ("threshold", "fpr", "tpr", "precision")
                },
            }
        )
    return out


def _seconds(record: run_store.Run) -> float | None:
    if record.started_at is None:
        return None
    end = record.finished_at or record.heartbeat_at or record.started_at
    return (end - record.started_at).total_seconds()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidArgument(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
