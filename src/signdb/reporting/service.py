"""``signdb report``: one static, offline HTML page about a run.

Every figure is drawn with matplotlib and embedded as a base64 PNG data URI,
and so is every gallery image, so ``index.html`` is the whole report: it needs
no server, no network and no sibling files, and can be mailed as is. A run that
was not evaluated on the test split is evaluated first.
"""

from __future__ import annotations

import html
from pathlib import Path

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.evaluation import evaluate
from signdb.reporting import figures, page
from signdb.reporting.figures import SPLIT, fmt
from signdb.store import datasets as ds_store
from signdb.store import evaluations as eval_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store
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
        evaluated = eval_store.has_evaluation(session, run_id, SPLIT)
    if not evaluated:
        evaluate(engine, run_id, split=SPLIT)
    with transaction(engine, f"reading the results of run {run_id}") as session:
        series = summaries.learning_curves(session, run_id)
        cells = prediction_store.confusion(session, run_id, SPLIT)
        rows = eval_store.evaluation_rows(session, run_id, SPLIT)
        headline = eval_store.headline(session, run_id, SPLIT, run.classes)
        wrong = prediction_store.misclassified(session, run_id, SPLIT, GALLERY_LIMIT)
        n_wrong = prediction_store.count_misclassified(session, run_id, SPLIT)

    pr_src, roc_src, caption = figures.curve_figures(rows, threshold)
    learning = figures.learning_figure(series)
    confusion = figures.confusion_figure(run.classes, cells, names)
    tiles = [
        {
            **w,
            "label": names.get(w["label"], w["label"]),
            "predicted": names.get(w["predicted"], w["predicted"]),
            "src": figures.thumbnail(w["pixels"], w["height"], w["width"], w["channels"]),
        }
        for w in wrong
    ]
    panels = [
        page.frame("learning", "Learning curves", page.img(learning, "learning")),
        page.frame("confusion", "Confusion matrix", page.img(confusion, "cm")),
        page.frame("pr", "Precision-recall", page.img(pr_src, "precision-recall curve")),
        page.frame("roc", "ROC", page.img(roc_src, "ROC curve")),
        page.gallery(tiles, n_wrong),
    ]
    facts = {
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
    title = f"signdb run {run.id}" + (f": {run.name}" if run.name else "")
    lead = (
        f"{html.escape(run.model)} on {html.escape(run.dataset)}, classes "
        f"{html.escape(', '.join(names.get(c, str(c)) for c in run.classes))}. "
        f"{html.escape(caption)}"
    )
    return page.write_page(out_dir, page.page(title, lead, panels, facts))
