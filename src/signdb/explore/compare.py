"""Two to ten runs side by side: facts, scores, hyperparameters that differ, confusion
differences, and the paired test of every pair scored on the same images.

>>> a, b = [r["run_id"] for r in db.runs()[-2:]]
>>> result = compare_runs(db.engine, [a, b])
>>> [r["run_id"] for r in result["runs"]] == [a, b], len(result["pairs"])
(True, 1)
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.evaluation import compare
from signdb.store import datasets as ds_store
from signdb.store import metrics as metric_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store
from signdb.store import scores as score_store
from signdb.store import summaries

SPLIT = "test"
MAX_RUNS = 10


def parse_run_ids(raw: str) -> list[int]:
    """``"3,1,7"`` -> [3, 1, 7]: 2 to 10 distinct run ids, in the order given.

    >>> parse_run_ids("3, 1,7")
    [3, 1, 7]
    """
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise InvalidArgument(
            f"runs takes comma-separated run ids, e.g. runs=3,7; got {raw!r}"
        ) from None
    if len(set(ids)) != len(ids) or not 2 <= len(ids) <= MAX_RUNS:
        raise InvalidArgument(
            f"compare takes 2 to {MAX_RUNS} distinct run ids, got {raw!r}; e.g. runs=3,7"
        )
    return ids


def compare_runs(engine: Engine, run_ids: list[int]) -> dict[str, Any]:
    """Everything the comparison page shows, from the runs' stored results."""
    if len(set(run_ids)) != len(run_ids) or not 2 <= len(run_ids) <= MAX_RUNS:
        raise InvalidArgument(f"compare takes 2 to {MAX_RUNS} distinct run ids, got {run_ids}")
    runs = []
    with transaction(engine, f"reading runs {run_ids}") as session:
        for run_id in run_ids:
            record = run_store.get_run(session, run_id)
            names = ds_store.class_names(session, record.dataset_id)
            runs.append(
                {
                    **(summaries.run_summary(session, run_id) or {}),
                    "scores": {
                        s["metric"]: s for s in score_store.run_scores(session, run_id, SPLIT)
                    },
                    "confusion": prediction_store.confusion(session, run_id, SPLIT),
                    "names": {str(k): v for k, v in names.items()},
                    "metrics": metric_store.metric_points(session, run_id),
                }
            )
    return {
        "runs": runs,
        "split": SPLIT,
        "hyperparams": _param_table(runs),
        "confusion_difference": _confusion_difference(runs),
        "pairs": [_pair(engine, a["run_id"], b["run_id"]) for a, b in combinations(runs, 2)],
    }


def _param_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per hyperparameter (and the seed): each run's value, and whether they differ."""
    keys = sorted({k for r in runs for k in r["hyperparams"]})
    rows = [{"name": k, "values": [r["hyperparams"].get(k) for r in runs]} for k in keys]
    if "seed" not in keys:
        rows.append({"name": "seed", "values": [r["seed"] for r in runs]})
    for row in rows:
        row["differs"] = any(v != row["values"][0] for v in row["values"])
    return rows


def _confusion_difference(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each later run's confusion counts minus the first run's, cell by cell (runs of the
    first run's classes only)."""
    base = runs[0]
    base_cells = {(a, p): n for a, p, n in base["confusion"]}
    out = []
    for run in runs[1:]:
        if run["classes"] != base["classes"] or not run["confusion"] or not base_cells:
            continue
        cells = {(a, p): n for a, p, n in run["confusion"]}
        out.append(
            {
                "run_id": run["run_id"],
                "against": base["run_id"],
                "cells": [
                    {
                        "actual": a,
                        "predicted": p,
                        "difference": cells.get((a, p), 0) - base_cells.get((a, p), 0),
                    }
                    for (a, p) in sorted(set(cells) | set(base_cells))
                ],
            }
        )
    return out


def _pair(engine: Engine, a: int, b: int) -> dict[str, Any]:
    """``signdb compare a b`` on the test split, or why the pair cannot be compared."""
    try:
        return {"runs": [a, b], "comparable": True, **compare(engine, a, b).as_dict()}
    except InvalidArgument as e:
        return {"runs": [a, b], "comparable": False, "reason": str(e)}
