"""``signdb report --sweep NAME``: one static, offline HTML page about a sweep.

The objective against each parameter, a parallel-coordinates plot, the
learning curves of the best five trials and the seed's table (mean ± sd over
the repeats of val and test accuracy, precision, recall and F1), all read
through the analysts' views. Like the run report it is one self-contained
file: every figure is an inline PNG.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.reporting import page
from signdb.reporting.sweep_figures import best_curves_figure, objective_figure, parallel_figure
from signdb.store import summaries
from signdb.store import sweeps as sweep_store
from signdb.sweeps import show

BEST = 5
METRICS = ("accuracy", "precision", "recall", "f1")


def write_sweep_report(engine: Engine, name: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` for sweep ``name`` and return its path."""
    shown = show(engine, name)
    with transaction(engine, f"reading the trials of sweep {name!r}") as session:
        rows = sweep_store.trial_rows(session, name)
        trials = _trials(rows)
        best = sorted(
            (t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None),
            key=lambda t: -t["value"],
        )[:BEST]
        curves = [
            (_label(t), summaries.learning_curves(session, t["first_run"]))
            for t in best
            if t["first_run"] is not None
        ]
    metric = shown.objective
    panels = [
        page.panel("objective", "Objective by parameter", page.img(objective_figure(trials, shown.space, metric), "objective against each parameter", 1200, 400), wide=True),
        page.panel("parallel", "Parallel coordinates", page.img(parallel_figure(trials, shown.space, metric), "parallel coordinates")),
        page.panel("curves", "Best trials", page.img(best_curves_figure(curves, metric), "learning curves of the best trials")),
        page.panel("table", "Configurations (mean ± sd over repeats)", _table(shown.as_dict()), wide=True),
    ]  # fmt: skip
    states = ", ".join(f"{v} {k}" for k, v in shown.trials.items() if v)
    facts = {
        "sweep": shown.sweep,
        "dataset": shown.dataset,
        "model": shown.model,
        "sampler": shown.sampler,
        "objective": f"{shown.objective} (chosen on val; test is reported, never used)",
        "trials": f"{shown.budget} ({states or 'none run yet'})",
        "repeats": shown.repeats,
        "space": shown.space,
        "fixed": shown.fixed,
    }
    if shown.best:
        facts["best"] = (
            ", ".join(f"{k}={_num(v)}" for k, v in sorted(shown.best["params"].items()))
            + f": {metric} {shown.best['value']:.4f}, test "
            + ", ".join(f"{k} {_num(v)}" for k, v in shown.best["test"].items())
            + f" (runs {', '.join(map(str, shown.best['run_ids']))})"
        )
    lead = (
        f"{html.escape(shown.model)} on {html.escape(shown.dataset)}: {len(trials)} trials, "
        f"{html.escape(states or 'none run yet')}."
    )
    text = page.page(f"signdb sweep {shown.sweep}", lead, panels, facts, "Sweep")
    return page.write_page(out_dir, text)


def _trials(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per trial from ``sweep_trials`` (one row per trial and run)."""
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        t = out.setdefault(
            r["trial_number"],
            {
                "number": r["trial_number"],
                "state": r["state"],
                "value": r["objective"],
                "params": r["params"],
                "first_run": None,
            },
        )
        if r["repeat"] == 0:
            t["first_run"] = r["run_id"]
    return list(out.values())


def _label(trial: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={_num(v)}" for k, v in sorted(trial["params"].items()))
    return f"#{trial['number']} {params} ({trial['value']:.3f})"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v)


def _table(result: dict[str, Any]) -> str:
    rows = result["table"]
    if not rows:
        return '<p class="caption">No complete trials yet.</p>'
    names = sorted({k for r in rows for k in r["params"]})
    head = [*names, "runs"] + [f"{s} {m}" for s in ("val", "test") for m in METRICS]
    body = []
    for r in rows:
        cells = [_num(r["params"].get(n)) for n in names] + [str(r["runs"])]
        for split in ("val", "test"):
            for m in METRICS:
                cell = r[f"{split}_{m}"]
                if cell["mean"] is None:
                    cells.append("-")
                else:
                    sd = "" if cell["sd"] is None else f" ± {cell['sd']:.3f}"
                    cells.append(f"{cell['mean']:.3f}{sd}")
        body.append(cells)
    return page.table(head, body, numeric_from=len(names))
