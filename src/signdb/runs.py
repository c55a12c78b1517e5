"""Run listings for the CLI, read from the analysts' own ``run_summary`` view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from signdb.db.engine import transaction
from signdb.errors import NotFound
from signdb.store import runs as run_store

_COLUMNS = (
    "run_id, name, dataset, model, classes, hyperparams, seed, test_fraction, status, error, "
    "started_at, finished_at, steps_done, total_steps, train_size, test_size, dataset_fingerprint, "
    "code_version, final_cost, train_accuracy, test_accuracy, best_test_accuracy, "
    "test_precision, test_recall, test_f1"
)


def _rows(engine: Engine, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with transaction(engine) as session:
        # A dead trainer cannot mark its own run; whoever looks next does.
        run_store.reconcile_stale(session)
        rows = session.execute(
            text(f"SELECT {_COLUMNS} FROM signdb.run_summary {where}"),  # noqa: S608 - constant SQL
            params,
        )
        return [dict(row._mapping) for row in rows]


def list_runs(
    engine: Engine, *, dataset: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    return _rows(
        engine,
        "WHERE (CAST(:dataset AS text) IS NULL OR dataset = :dataset) ORDER BY run_id DESC LIMIT :limit",
        {"dataset": dataset, "limit": limit},
    )


def show_run(engine: Engine, run_id: int) -> dict[str, Any]:
    rows = _rows(engine, "WHERE run_id = :id", {"id": run_id})
    if not rows:
        raise NotFound(f"no run with id {run_id}; `signdb runs list` shows the runs")
    return rows[0]
