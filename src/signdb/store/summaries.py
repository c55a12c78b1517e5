"""Reads of the analysts' views that the CLI and the report show: ``run_summary`` and
``learning_curves``. Reading them, not the tables, keeps one definition of each number."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_COLUMNS = (
    "run_id, name, dataset, model, engine, classes, class_names, hyperparams, seed, split, "
    "test_fraction, val_fraction, status, error, started_at, finished_at, steps_done, total_steps, "
    "train_size, val_size, test_size, dataset_fingerprint, code_version, final_cost, "
    "train_accuracy, val_accuracy, test_accuracy, best_val_accuracy, best_test_accuracy, "
    "test_precision, test_recall, test_f1"
)
_LIST = text(
    f"SELECT {_COLUMNS} FROM signdb.run_summary "  # noqa: S608 - constant column list
    "WHERE (CAST(:dataset AS text) IS NULL OR dataset = :dataset) ORDER BY run_id DESC LIMIT :limit"
)
_ONE = text(f"SELECT {_COLUMNS} FROM signdb.run_summary WHERE run_id = :id")  # noqa: S608


def list_runs(session: Session, *, dataset: str | None, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(_LIST, {"dataset": dataset, "limit": limit})
    return [dict(row._mapping) for row in rows]


def run_summary(session: Session, run_id: int) -> dict[str, Any] | None:
    row = session.execute(_ONE, {"id": run_id}).one_or_none()
    return None if row is None else dict(row._mapping)


def learning_curves(session: Session, run_id: int) -> dict[str, tuple[list[int], list[float]]]:
    """``{metric: (steps, values)}`` of one run, steps ascending."""
    rows = session.execute(
        text(
            "SELECT metric, step, value FROM signdb.learning_curves "
            "WHERE run_id = :r ORDER BY metric, step"
        ),
        {"r": run_id},
    )
    series: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for name, step, value in rows:
        series[name][0].append(step)
        series[name][1].append(value)
    return dict(series)
