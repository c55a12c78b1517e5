"""``signdb report``: one static, offline HTML page about a run.

Every figure is drawn with matplotlib (Agg) and embedded as a base64 PNG data
URI, and so is every gallery image, so ``index.html`` is the whole report: it
needs no server, no network and no sibling files, and can be mailed as is.
Each figure sits in a frame with its own colour (``data-frame``), which lets a
browser test find every figure in a screenshot.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.store import evaluations as eval_store
from signdb.store import runs as run_store

#: Frame colours of the figures; unusual enough that no plot draws them.
FRAMES = {
    "learning": "#ff00ff",
    "confusion": "#00ffff",
    "pr": "#ffff00",
    "roc": "#00ff00",
    "gallery": "#ff8000",
}
GALLERY_LIMIT = 24
_SPLIT = "test"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, whatever the environment says
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5), layout="constrained")


# -- figures ------------------------------------------------------------------------------
def learning_figure(series: dict[str, tuple[list[int], list[float]]]) -> str:
    fig, ax = _figure()
    cost_ax = ax.twinx() if "cost" in series and len(series) > 1 else ax
    for name, (steps, values) in sorted(series.items()):
        target = cost_ax if name == "cost" else ax
        style = "--" if name == "cost" else "-"
        target.plot(steps, values, style, label=name, marker="." if len(steps) < 40 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy" if cost_ax is not ax else "value")
    if cost_ax is not ax:
        cost_ax.set_ylabel("cost")
    handles = [h for a in {ax, cost_ax} for h in a.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(handles=handles, loc="center right")
    else:
        ax.text(0.5, 0.5, "no metrics recorded", ha="center", va="center")
    ax.set_title("Learning curves")
    return _png(fig)


def confusion_figure(classes: list[int], cells: list[tuple[int, int, int]]) -> str:
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for actual, predicted, n in cells:
        if actual in index and predicted in index:
            matrix[index[actual], index[predicted]] = n
    fig, ax = _figure()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    half = matrix.max() / 2 if matrix.size else 0
    for i in ticks:
        for j in ticks:
            colour = "white" if matrix[i, j] > half else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(f"Confusion matrix ({_SPLIT})")
    return _png(fig)


def _fpr(row: dict[str, Any]) -> float | None:
    negatives = row["fp"] + row["tn"]
    return row["fp"] / negatives if negatives else None


def curve_figures(rows: list[dict[str, Any]], threshold: float) -> tuple[str, str, str]:
    """(PR figure, ROC figure, caption) from evaluation rows.

    Binary runs draw the threshold sweep as curves and mark the row nearest
    ``threshold``; multi-class runs show one one-vs-rest point per class.
    """
    pr_fig, pr = _figure()
    roc_fig, roc = _figure()
    binary = all(r["threshold"] is not None for r in rows)
    if binary and rows:
        sweep = sorted(rows, key=lambda r: r["threshold"])
        recall = [r["recall"] for r in sweep]
        precision = [r["precision"] for r in sweep]
        pr.plot(
            [r for r, p in zip(recall, precision, strict=True) if p is not None],
            [p for p in precision if p is not None],
            "-",
            label="threshold sweep",
        )
        roc.plot([_fpr(r) for r in sweep], recall, "-", label="threshold sweep")
        marked = min(sweep, key=lambda r: abs(r["threshold"] - threshold))
        label = f"threshold {marked['threshold']:.2f}"
        pr.plot([marked["recall"]], [marked["precision"] or 0], "o", color="red", label=label)
        roc.plot([_fpr(marked)], [marked["recall"]], "o", color="red", label=label)
        caption = (
            f"Marked: threshold {marked['threshold']:.2f} (precision "
            f"{_fmt(marked['precision'])}, recall {_fmt(marked['recall'])}, F1 {_fmt(marked['f1'])})."
        )
    else:
        for r in rows:
            cls = r["positive_class"]
            pr.plot([r["recall"]], [r["precision"] or 0], "o")
            pr.annotate(str(cls), (r["recall"], r["precision"] or 0), textcoords="offset points",
                        xytext=(4, 4))  # fmt: skip
            roc.plot([_fpr(r)], [r["recall"]], "o")
            roc.annotate(str(cls), (_fpr(r), r["recall"]), textcoords="offset points",
                         xytext=(4, 4))  # fmt: skip
        caption = "One-vs-rest point per class at the argmax decision."
    roc.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    for ax, title, xlabel, ylabel in (
        (pr, "Precision-recall", "recall", "precision"),
        (roc, "ROC", "false positive rate", "true positive rate (recall)"),
    ):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({_SPLIT})")
        ax.grid(alpha=0.3)
        if binary:
            ax.legend(loc="lower left" if ax is pr else "lower right")
    return _png(pr_fig), _png(roc_fig), caption


def thumbnail(pixels: bytes, height: int, width: int, channels: int) -> str:
    from PIL import Image

    arr = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, channels)
    image = Image.fromarray(arr[:, :, 0] if channels == 1 else arr)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- page -----------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _frame(key: str, title: str, body: str) -> str:
    colour = FRAMES[key]
    return (
        f'<section class="figure" id="fig-{key}" data-frame="{colour}" '
        f'style="border-color:{colour}"><h2>{html.escape(title)}</h2>{body}</section>'
    )


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}" width="600" height="450">'


_CSS = """
body { font-family: sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: 620px 620px; gap: 12px; }
.figure { border: 4px solid; padding: 4px; }
.wide { grid-column: 1 / span 2; }
.gallery { display: flex; flex-wrap: wrap; gap: 6px; }
.gallery figure { margin: 0; width: 96px; font-size: 10px; overflow-wrap: anywhere; }
.gallery img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
table { border-collapse: collapse; font-size: 12px; margin-top: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
.caption { font-size: 12px; color: #555; }
"""


def write_report(
    engine: Engine, run_id: int, out_dir: str | Path, *, threshold: float = 0.5
) -> Path:
    """Write ``out_dir/index.html`` for a run and return its path."""
    if not 0 <= threshold <= 1:
        raise InvalidArgument(f"--threshold must be between 0 and 1, got {threshold}")
    with transaction(engine) as session:
        run = run_store.get_run(session, run_id)
        evaluated = eval_store.has_evaluation(session, run_id, _SPLIT)
    if not evaluated:
        from signdb.evaluate import evaluate

        evaluate(engine, run_id, split=_SPLIT)
    with transaction(engine) as session:
        metrics = session.execute(
            text(
                "SELECT metric, step, value FROM signdb.learning_curves "
                "WHERE run_id = :r ORDER BY metric, step"
            ),
            {"r": run_id},
        )
        series: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for name, step, value in metrics:
            series[name][0].append(step)
            series[name][1].append(value)
        cells = eval_store.confusion(session, run_id, _SPLIT)
        rows = eval_store.evaluation_rows(session, run_id, _SPLIT)
        headline = eval_store.headline(session, run_id, _SPLIT, run.classes)
        wrong = eval_store.misclassified(session, run_id, _SPLIT, GALLERY_LIMIT)
        n_wrong = session.scalar(
            text(
                "SELECT count(*) FROM signdb.predictions "
                "WHERE run_id = :r AND split = :s AND label <> predicted"
            ),
            {"r": run_id, "s": _SPLIT},
        )

    pr_src, roc_src, caption = curve_figures(rows, threshold)
    figures = [
        _frame("learning", "Learning curves", _img(learning_figure(dict(series)), "learning")),
        _frame("confusion", "Confusion matrix", _img(confusion_figure(run.classes, cells), "cm")),
        _frame("pr", "Precision-recall", _img(pr_src, "precision-recall curve")),
        _frame("roc", "ROC", _img(roc_src, "ROC curve")),
    ]
    if wrong:
        tiles = "".join(
            f'<figure><img src="{thumbnail(w["pixels"], w["height"], w["width"], w["channels"])}" '
            f'alt="image {w["image_id"]}"><figcaption>true {w["label"]} &rarr; '
            f"{w['predicted']} (p={w['probability']:.2f})<br>"
            f"{html.escape(Path(w['source']).name)}</figcaption></figure>"
            for w in wrong
        )
        body = (
            f'<p class="caption">{len(wrong)} of {n_wrong} misclassified {_SPLIT} images, '
            f'most confident first.</p><div class="gallery">{tiles}</div>'
        )
        figures.append(
            _frame("gallery", "Misclassified test images", body).replace(
                'class="figure"', 'class="figure wide"', 1
            )
        )
    else:
        figures.append('<p class="wide">No misclassified test images.</p>')

    facts = {
        "run": run.id,
        "name": run.name,
        "dataset": run.dataset,
        "model": run.model,
        "classes": run.classes,
        "status": run.status,
        "seed": run.seed,
        "test fraction": run.test_fraction,
        "train / test images": f"{run.train_size} / {run.test_size}",
        "steps": f"{run.steps_done} of {run.total_steps}",
        "train accuracy": run.train_accuracy,
        "test accuracy": run.test_accuracy,
        "test precision / recall / F1": " / ".join(
            _fmt(headline[k]) for k in ("precision", "recall", "f1")
        ),
        "dataset fingerprint": run.dataset_fingerprint,
        "code version": run.code_version,
        "started / finished": f"{run.started_at} / {run.finished_at}",
        **{f"hyperparameter {k}": v for k, v in sorted(run.hyperparams.items())},
    }
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in facts.items()
    )
    title = f"signdb run {run.id}" + (f": {run.name}" if run.name else "")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="caption">{html.escape(run.model)} on {html.escape(run.dataset)}, classes '
        f"{html.escape(', '.join(map(str, run.classes)))}. {html.escape(caption)}</p>"
        f'<div class="grid">{"".join(figures)}</div>'
        f"<h2>Run and hyperparameters</h2><table>{table}</table></body></html>\n"
    )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "index.html"
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(
            f"cannot write the report into {out}: {e.strerror}; choose another --out folder"
        ) from None
    return path.resolve()
