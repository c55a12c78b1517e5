"""Runs as the analysts see them: read from the ``run_summary`` view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import NotFound
from signdb.store import runs as run_store
from signdb.store import summaries


def list_runs(
    engine: Engine, *, dataset: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    with transaction(engine, "listing runs") as session:
        # A dead trainer cannot mark its own run; whoever looks next does.
        run_store.reconcile_stale(session)
        return summaries.list_runs(session, dataset=dataset, limit=limit)


def show_run(engine: Engine, run_id: int) -> dict[str, Any]:
    with transaction(engine, f"reading run {run_id}") as session:
        run_store.reconcile_stale(session)
        found = summaries.run_summary(session, run_id)
        if found is None:
            raise NotFound(f"no run with id {run_id}; `signdb runs list` shows the runs")
        # Beside the view's columns: how many processes trained it (torch.distributed).
        found["world_size"] = run_store.get_run(session, run_id).world_size
    return found
