"""``signdb report``: one static, offline HTML page about a run.

Learning curves, the confusion matrix, every class's ROC and precision-recall
curve with its area, the reliability diagram with its ECE, the scores with
their bootstrap intervals, and the most confident mistakes. Every figure is
drawn with matplotlib and embedded as a base64 PNG data URI, and so is every
gallery image, so ``index.html`` is the whole report: it needs no server, no
network and no sibling files, and can be mailed as is. A run whose test split
was not evaluated (or was, before scores were stored) is evaluated first.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.evaluation import evaluate
from signdb.ml.scores import SCORE_NAMES
from signdb.reporting import figures, page
from signdb.reporting.figures import SPLIT, fmt
from signdb.store import datasets as ds_store
from signdb.store import evaluations as eval_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store
from signdb.store import scores as score_store
from signdb.store import summaries

GALLERY_LIMIT = 24


def write_report(
    engine: Engine, run_id: int, out_dir: str | Path, *, threshold: float = 0.5
) -> Path:
    """Write ``out_dir/index.html`` for a run and return its path."""
    if not 0 <= threshold <= 1:
        raise InvalidArgument(f"--threshold must be between 0 and 1, got {threshold}")
    with transaction(engine, f"reading run {run_id}") as session:
        run = run_store.get_run(session, run_id)
        names = ds_store.class_names(session, run.dataset_id)
        evaluated = eval_store.has_evaluation(session, run_id, SPLIT) and bool(
            score_store.run_scores(session, run_id, SPLIT)
        )
    if not evaluated:
        evaluate(engine, run_id, split=SPLIT)
    with transaction(engine, f"reading the results of run {run_id}") as session:
        series = summaries.learning_curves(session, run_id)
        cells = prediction_store.confusion(session, run_id, SPLIT)
        rows = eval_store.evaluation_rows(session, run_id, SPLIT)
        headline = eval_store.headline(session, run_id, SPLIT, run.classes)
        wrong = prediction_store.misclassified(session, run_id, SPLIT, GALLERY_LIMIT)
        n_wrong = prediction_store.count_misclassified(session, run_id, SPLIT)
        scores = {r["metric"]: r for r in score_store.run_scores(session, run_id, SPLIT)}
        points = score_store.class_curves(session, run_id, SPLIT)
        areas = score_store.class_scores(session, run_id, SPLIT)
        bins = score_store.calibration(session, run_id, SPLIT)

    binary = all(r["threshold"] is not None for r in rows)
    marked = min(rows, key=lambda r: abs(r["threshold"] - threshold)) if binary and rows else None
    roc_src, pr_src = figures.class_curve_figures(points, areas, names, marked)
    ece = scores.get("ece", {}).get("value")
    reliability = figures.reliability_figure(bins, ece)
    learning = figures.learning_figure(series)
    confusion = figures.confusion_figure(run.classes, cells, names)
    panels = [
        page.panel("learning", "Learning curves", page.img(learning, "learning")),
        page.panel("confusion", "Confusion matrix", page.img(confusion, "cm")),
        page.panel("roc", "ROC", page.img(roc_src, "ROC curves")),
        page.panel("pr", "Precision-recall", page.img(pr_src, "precision-recall curves")),
        page.panel("reliability", "Calibration", page.img(reliability, "reliability diagram")),
        page.panel("scores", f"Scores ({SPLIT})", _scores_table(scores)),
        page.gallery(_tiles(wrong, names), n_wrong),
    ]
    caption = (
        f"Marked: threshold {marked['threshold']:.2f} (precision {fmt(marked['precision'])}, "
        f"recall {fmt(marked['recall'])}, F1 {fmt(marked['f1'])})."
        if marked
        else "Multi-class: each class against the rest, at the argmax decision."
    )
    title = f"signdb run {run.id}" + (f": {run.name}" if run.name else "")
    lead = (
        f"{html.escape(run.model)} on {html.escape(run.dataset)}, classes "
        f"{html.escape(', '.join(names.get(c, str(c)) for c in run.classes))}. "
        f"{html.escape(caption)}"
    )
    return page.write_page(out_dir, page.page(title, lead, panels, _facts(run, names, headline)))


def _tiles(wrong: list[dict[str, Any]], names: dict[int, str]) -> list[dict[str, Any]]:
    """The gallery's misclassified images, with class names and inline thumbnails."""
    return [
        {
            **w,
            "label": names.get(w["label"], w["label"]),
            "predicted": names.get(w["predicted"], w["predicted"]),
            "src": figures.thumbnail(w["pixels"], w["height"], w["width"], w["channels"]),
        }
        for w in wrong
    ]


def _facts(run: run_store.Run, names: dict[int, str], headline: dict[str, Any]) -> dict[str, Any]:
    """The report's table of facts about the run, in reading order."""
    return {
        "run": run.id,
        "name": run.name,
        "dataset": run.dataset,
        "model": run.model,
        "classes": ", ".join(names.get(c, str(c)) for c in run.classes),
        "status": run.status,
        "seed": run.seed,
        "train / val / test images": f"{run.train_size} / {run.val_size} / {run.test_size}",
        "split": f"{run.split} (test fraction {run.test_fraction}, val {run.val_fraction})",
        "steps": f"{run.steps_done} of {run.total_steps}",
        "train accuracy": run.train_accuracy,
        "test accuracy": run.test_accuracy,
        "test precision / recall / F1": " / ".join(
            fmt(headline[k]) for k in ("precision", "recall", "f1")
        ),
        "dataset fingerprint": run.dataset_fingerprint,
        "code version": run.code_version,
        "started / finished": f"{run.started_at} / {run.finished_at}",
        **{f"hyperparameter {k}": v for k, v in sorted(run.hyperparams.items())},
    }


def _scores_table(scores: dict[str, dict]) -> str:
    """The scores of ``run_scores`` with their 95% bootstrap intervals."""
    rows = []
    for metric in SCORE_NAMES:
        if metric not in scores:
            continue
        s = scores[metric]
        interval = "" if s["ci_low"] is None else f"{s['ci_low']:.4f} to {s['ci_high']:.4f}"
        rows.append([metric.replace("_", " "), fmt(s["value"]), interval])
    if not rows:
        return '<p class="caption">No scores stored.</p>'
    note = (
        '<p class="caption">95% intervals: percentile bootstrap over the test images '
        "(run_scores); ranking scores have none.</p>"
    )
    return page.table(["score", "value", "95% interval"], rows, numeric_from=1) + note
