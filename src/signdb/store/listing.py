"""The runs page's reads: one page of runs under filters and a sort, and the filters' choices.

Read from ``signdb.runs`` itself rather than ``run_summary``: the view's
correlated subqueries over ``run_metrics`` would run for every run a sort
has to see, while every column the page shows or sorts by is stored on the
run row. No commits here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

#: Sort keys of the runs page -> the SQL they order by (a fixed list: never user text).
SORTS = {
    "run_id": "r.id",
    "name": "r.name",
    "dataset": "d.name",
    "model": "r.model",
    "engine": "r.engine",
    "status": "signdb.effective_status(r.status, r.heartbeat_at)",
    "started_at": "r.started_at",
    "duration": "coalesce(r.finished_at, now()) - r.started_at",
    "sweep": "r.sweep",
    "seed": "r.seed",
    "train_accuracy": "r.train_accuracy",
    "val_accuracy": "r.val_accuracy",
    "test_accuracy": "r.test_accuracy",
    "test_f1": "r.test_f1",
}


@dataclass(frozen=True)
class RunFilter:
    dataset: str | None = None
    model: str | None = None
    status: str | None = None
    sweep: str | None = None
    #: Hyperparameters the runs must have, with these values (JSON-comparable).
    params: dict[str, Any] = field(default_factory=dict)

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause of the filters that are set (fixed fragments; only the values
        are bound), and its parameters. A filter left out costs nothing per run."""
        given = {
            "dataset": self.dataset,
            "model": self.model,
            "status": self.status,
            "sweep": self.sweep,
            "params": json.dumps(self.params) if self.params else None,
        }
        clauses = [_CONDITIONS[key] for key, value in given.items() if value is not None]
        bound = {key: value for key, value in given.items() if value is not None}
        return " AND ".join(clauses) or "true", bound


_CONDITIONS = {
    "dataset": "r.dataset_id = (SELECT id FROM signdb.datasets WHERE name = :dataset)",
    "model": "r.model = :model",
    "status": "signdb.effective_status(r.status, r.heartbeat_at) = :status",
    "sweep": "r.sweep = :sweep",
    "params": "r.hyperparams @> CAST(:params AS jsonb)",
}

# The page's ids by a top-N sort, then only those rows' details, in the same order.
_PAGE = """
    WITH page AS (
        SELECT r.id, {order} AS sort_key FROM signdb.runs r {join}
        WHERE {where}
        ORDER BY {order} {direction}{nulls}, r.id DESC
        LIMIT :limit OFFSET :offset
    )
    SELECT r.id AS run_id, r.name, d.name AS dataset, r.model, r.engine, r.classes,
           (SELECT array_agg(c.name ORDER BY c.label) FROM signdb.classes c
             WHERE c.dataset_id = r.dataset_id AND c.label = ANY(r.classes)) AS class_names,
           signdb.effective_status(r.status, r.heartbeat_at) AS status,
           r.started_at, r.finished_at,
           extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at)::float8
               AS duration_seconds,
           r.sweep, r.trial_number, r.seed, r.hyperparams, r.steps_done, r.total_steps,
           r.train_accuracy, r.val_accuracy, r.test_accuracy,
           r.test_accuracy_low, r.test_accuracy_high, r.test_f1
    FROM page JOIN signdb.runs r ON r.id = page.id JOIN signdb.datasets d ON d.id = r.dataset_id
    ORDER BY page.sort_key {direction}{nulls}, r.id DESC"""


def count_runs(session: Session, where: RunFilter) -> int:
    clause, params = where.where()
    return int(
        session.scalar(text(f"SELECT count(*) FROM signdb.runs r WHERE {clause}"), params)  # noqa: S608 - fixed fragments
    )


def page_of_runs(
    session: Session, where: RunFilter, *, sort: str, descending: bool, limit: int, offset: int
) -> list[dict[str, Any]]:
    """One page of runs; ``sort`` is a key of :data:`SORTS` (checked by the caller)."""
    clause, params = where.where()
    statement = _PAGE.format(
        where=clause,
        order=SORTS[sort],
        direction="DESC" if descending else "ASC",
        # Ids are never NULL, and without NULLS LAST a descending id order is the primary
        # key read backwards (the default page) instead of a sort of every run.
        nulls="" if sort == "run_id" else " NULLS LAST",
        join="JOIN signdb.datasets d ON d.id = r.dataset_id" if sort == "dataset" else "",
    )
    rows = session.execute(text(statement), {**params, "limit": limit, "offset": offset})
    return [dict(row._mapping) for row in rows]


def filter_choices(session: Session) -> dict[str, list[Any]]:
    """The values the runs page offers in its filters: datasets, models, sweeps and
    hyperparameter names."""
    row = session.execute(
        text(
            "SELECT "
            "(SELECT array_agg(name ORDER BY name) FROM signdb.datasets), "
            "(SELECT array_agg(DISTINCT model ORDER BY model) FROM signdb.runs), "
            "(SELECT array_agg(name ORDER BY name) FROM signdb.sweeps), "
            "(SELECT array_agg(DISTINCT k ORDER BY k) FROM "
            "  (SELECT jsonb_object_keys(hyperparams) AS k FROM signdb.runs) keys)"
        )
    ).one()
    return {
        key: list(values or [])
        for key, values in zip(("datasets", "models", "sweeps", "params"), row, strict=True)
    }


def run_extras(session: Session, run_id: int) -> dict[str, Any]:
    """What a run's page shows beyond ``run_summary``: its sweep trial and its process."""
    row = session.execute(
        text(
            "SELECT sweep, trial_number, sweep_repeat, pid, test_accuracy_low, "
            "test_accuracy_high, val_f1, now() AS as_of "
            "FROM signdb.runs WHERE id = :r"
        ),
        {"r": run_id},
    ).one_or_none()
    return {} if row is None else dict(row._mapping)


def leaderboard(session: Session, dataset: str | None, top: int) -> list[dict[str, Any]]:
    """The ``leaderboard`` view's first ``top`` ranks of each dataset and class set."""
    rows = session.execute(
        text(
            "SELECT rank, dataset, classes, run_id, name, model, hyperparams, seed, "
            "test_accuracy, test_accuracy_low, test_accuracy_high, test_precision, "
            "test_recall, test_f1, finished_at FROM signdb.leaderboard "
            "WHERE (CAST(:d AS text) IS NULL OR dataset = :d) AND rank <= :top "
            "ORDER BY dataset, classes, rank, run_id"
        ),
        {"d": dataset, "top": top},
    )
    return [dict(row._mapping) for row in rows]
