"""``signdb sweep show``: trials by state, the best configuration on val, and the seed's table.

Read through the analysts' views (``sweep_trials``, ``sweep_summary``), so
what the command prints and what SQL returns are the same numbers. The best
configuration is chosen on the val objective alone; its test metrics are
reported, never used to choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from signdb.db import sweep_storage
from signdb.db.engine import transaction
from signdb.errors import SweepError
from signdb.results import Result
from signdb.store import sweeps as sweep_store

STATES = ("waiting", "running", "complete", "pruned", "fail")
METRICS = ("accuracy", "precision", "recall", "f1")


@dataclass
class ShowResult(Result):
    sweep: str
    dataset: str
    model: str
    sampler: str
    objective: str
    repeats: int
    trials: dict[str, int]
    best: dict[str, Any] | None
    table: list[dict[str, Any]] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    budget: int = 0


def show(engine: Engine, name: str) -> ShowResult:
    with transaction(engine, f"reading sweep {name!r}") as session:
        if not sweep_storage.schema_exists(session.connection()):
            raise SweepError("the database has no sweep tables; run `signdb db upgrade`")
        sweep = sweep_store.get_sweep(session, name)
        states = sweep_store.trial_states(session, name)
        summary = sweep_store.summary_rows(session, name)
        trial_rows = sweep_store.trial_rows(session, name)
    table = [_table_row(r) for r in summary]
    return ShowResult(
        sweep=sweep.name,
        dataset=sweep.dataset,
        model=sweep.model,
        sampler=sweep.sampler,
        objective=sweep.objective,
        repeats=sweep.repeats,
        trials={state: states.get(state, 0) for state in STATES},
        best=_best(summary, trial_rows),
        table=table,
        space=sweep.space,
        fixed=sweep.fixed,
        budget=sweep.trials,
    )


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"params": row["params"], "trials": row["trials"], "runs": row["runs"]}
    for split in ("val", "test"):
        for metric in METRICS:
            key = f"{split}_{metric}"
            out[key] = {"mean": row[f"{key}_mean"], "sd": row[f"{key}_sd"]}
    return out


def _best(summary: list[dict[str, Any]], trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The configuration with the highest mean val objective; its test metrics ride along."""
    if not summary or summary[0]["objective_mean"] is None:
        return None
    top = summary[0]
    runs = [
        t
        for t in trials
        if t["params"] == top["params"]
        and t["state"] == "COMPLETE"
        and t["run_status"] == "succeeded"
    ]
    best_run = max(runs, key=lambda t: (t["run_objective"] or 0.0, -t["run_id"]))
    return {
        "params": top["params"],
        "value": top["objective_mean"],
        "value_sd": top["objective_sd"],
        "trial_numbers": sorted({t["trial_number"] for t in runs}),
        "run_id": best_run["run_id"],
        "run_ids": sorted(t["run_id"] for t in runs),
        "test": {m: top[f"test_{m}_mean"] for m in METRICS},
    }
