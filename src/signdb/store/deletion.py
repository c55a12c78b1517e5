"""Deleting runs and datasets: locking what goes, counting it, and the deletes. No commits here.

A run's rows go by the foreign keys' ``ON DELETE CASCADE`` (run_images, weights,
predictions, evaluations, scores, curves, calibration) and its metrics by the
statement-level trigger of revision 0004 (run_metrics has no foreign key). A
dataset's classes and images cascade the same way; its runs and sweeps do not,
so they are deleted first, on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from sqlalchemy import exc, text
from sqlalchemy.orm import Session

from signdb.errors import InUse

#: What a run owns, by table, as ``runs delete`` counts it (the metrics table has no FK).
RUN_TABLES = (
    "run_metrics",
    "run_images",
    "weights",
    "predictions",
    "evaluations",
    "score_values",
    "class_score_values",
    "curves",
    "calibration_bins",
    "metric_buckets",
    "onnx_models",
)

#: Tables with a run_id that deleting a run leaves alone, and why.
KEPT_TABLES = {
    "model_aliases": "an alias refuses its run's deletion until it points elsewhere",
    "model_alias_events": "the aliases' history names runs that may since be gone",
    "served_predictions": "a log of what was served, which outlives the run that served it",
}

#: How to free a run that another table still points at; the fallback names the table.
_REFERENCE_FIXES = {
    "model_aliases": "a model alias points at it: point the alias at another run first",
}


@dataclass(frozen=True)
class LockedRun:
    id: int
    dataset: str
    model: str
    status: str  # effective: a running run whose heartbeat went stale reads "interrupted"
    sweep: str | None
    trial_number: int | None


def lock_runs(session: Session, run_ids: list[int]) -> list[LockedRun]:
    """The runs of ``run_ids`` that exist, locked until the transaction ends, by id.

    ``FOR UPDATE`` needs the UPDATE privilege: the analyst role is refused here,
    before anything is read or counted.
    """
    rows = session.execute(
        text(
            "SELECT r.id, d.name AS dataset, r.model, "
            "signdb.effective_status(r.status, r.heartbeat_at) AS status, "
            "r.sweep, r.trial_number "
            "FROM signdb.runs r JOIN signdb.datasets d ON d.id = r.dataset_id "
            "WHERE r.id = ANY(:ids) ORDER BY r.id FOR UPDATE OF r"
        ),
        {"ids": run_ids},
    )
    return [LockedRun(**row._mapping) for row in rows]


def lock_dataset_runs(session: Session, dataset_id: int) -> list[LockedRun]:
    """Every run of a dataset, locked (see :func:`lock_runs`)."""
    ids = list(
        session.scalars(
            text("SELECT id FROM signdb.runs WHERE dataset_id = :d ORDER BY id"), {"d": dataset_id}
        )
    )
    return lock_runs(session, ids)


def lock_dataset_for_delete(session: Session, dataset_id: int) -> None:
    """Waits for loads into the dataset to finish their batch; new ones wait for us."""
    session.execute(
        text("SELECT 1 FROM signdb.datasets WHERE id = :d FOR UPDATE"), {"d": dataset_id}
    )


#: One count per table of RUN_TABLES, spelled out: no SQL is built from strings.
_COUNT_RUN_ROWS = text(
    "SELECT "
    "(SELECT count(*) FROM signdb.run_metrics WHERE run_id = ANY(:ids)) AS run_metrics, "
    "(SELECT count(*) FROM signdb.run_images WHERE run_id = ANY(:ids)) AS run_images, "
    "(SELECT count(*) FROM signdb.weights WHERE run_id = ANY(:ids)) AS weights, "
    "(SELECT count(*) FROM signdb.predictions WHERE run_id = ANY(:ids)) AS predictions, "
    "(SELECT count(*) FROM signdb.evaluations WHERE run_id = ANY(:ids)) AS evaluations, "
    "(SELECT count(*) FROM signdb.score_values WHERE run_id = ANY(:ids)) AS score_values, "
    "(SELECT count(*) FROM signdb.class_score_values WHERE run_id = ANY(:ids)) "
    "AS class_score_values, "
    "(SELECT count(*) FROM signdb.curves WHERE run_id = ANY(:ids)) AS curves, "
    "(SELECT count(*) FROM signdb.calibration_bins WHERE run_id = ANY(:ids)) AS calibration_bins, "
    "(SELECT count(*) FROM signdb.metric_buckets WHERE run_id = ANY(:ids)) AS metric_buckets, "
    "(SELECT count(*) FROM signdb.onnx_models WHERE run_id = ANY(:ids)) AS onnx_models"
)


def count_run_rows(session: Session, run_ids: list[int]) -> dict[str, int]:
    """Rows each table holds for ``run_ids``: what deleting them removes."""
    if not run_ids:
        return dict.fromkeys(RUN_TABLES, 0)
    row = session.execute(_COUNT_RUN_ROWS, {"ids": run_ids}).one()
    return {table: int(n) for table, n in row._mapping.items()}


def delete_runs(session: Session, run_ids: list[int]) -> int:
    """Delete the runs (locked by the caller) and everything they own; returns the count.

    A table that points at a run without cascading (a model alias) makes
    PostgreSQL refuse; that becomes :class:`InUse` naming the run and the table.
    """
    if not run_ids:
        return 0
    try:
        with session.begin_nested():
            return session.execute(
                text("DELETE FROM signdb.runs WHERE id = ANY(:ids)"), {"ids": run_ids}
            ).rowcount
    except exc.IntegrityError as e:
        if not isinstance(e.orig, psycopg.errors.ForeignKeyViolation):
            raise
        raise _still_referenced(e.orig) from None


def _still_referenced(error: psycopg.errors.ForeignKeyViolation) -> InUse:
    # DETAIL: Key (id)=(5) is still referenced from table "model_aliases".
    detail = error.diag.message_detail or ""
    key = re.search(r"\)=\((\d+)\)", detail)
    table = re.search(r'from table "([^"]+)"', detail)
    run = f"run {key[1]}" if key else "a run"
    table_name = table[1] if table else "another table"
    fix = _REFERENCE_FIXES.get(
        table_name, f"delete or change the rows of {table_name} that point at it first"
    )
    return InUse(f"{run} cannot be deleted: {table_name} still refers to it; {fix}")


def dataset_sweeps(session: Session, dataset_id: int) -> list[str]:
    return list(
        session.scalars(
            text("SELECT name FROM signdb.sweeps WHERE dataset_id = :d ORDER BY name"),
            {"d": dataset_id},
        )
    )


def count_dataset_rows(session: Session, dataset_id: int) -> dict[str, int]:
    row = session.execute(
        text(
            "SELECT (SELECT count(*) FROM signdb.images WHERE dataset_id = :d) AS images, "
            "(SELECT count(*) FROM signdb.classes WHERE dataset_id = :d) AS classes"
        ),
        {"d": dataset_id},
    ).one()
    return {"images": int(row.images), "classes": int(row.classes)}


def delete_sweeps(session: Session, names: list[str]) -> None:
    """The sweeps' settings rows; their runs' ``sweep`` column is set NULL by the FK."""
    session.execute(text("DELETE FROM signdb.sweeps WHERE name = ANY(:n)"), {"n": names})


def delete_dataset(session: Session, dataset_id: int) -> None:
    """The dataset with its classes and images (cascades); its runs and sweeps must be gone."""
    session.execute(text("DELETE FROM signdb.datasets WHERE id = :d"), {"d": dataset_id})
