"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

#: The split every figure describes.
SPLIT = "test"


def png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(size: tuple[float, float] = (6, 4.5), ncols: int = 0) -> tuple[Any, Any]:
    """A figure and its axes (``ncols`` > 0: a row of that many axes sharing y)."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, whatever the environment says
    import matplotlib.pyplot as plt

    if ncols:
        return plt.subplots(
            1, ncols, figsize=size, layout="constrained", sharey=True, squeeze=False
        )
    return plt.subplots(figsize=size, layout="constrained")


# -- figures ------------------------------------------------------------------------------
def learning_figure(series: dict[str, tuple[list[int], list[float]]]) -> str:
    fig, ax = figure()
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
    return png(fig)


def confusion_figure(
    classes: list[int], cells: list[tuple[int, int, int]], names: dict[int, str] | None = None
) -> str:
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for actual, predicted, n in cells:
        if actual in index and predicted in index:
            matrix[index[actual], index[predicted]] = n
    fig, ax = figure()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    labels = [(names or {}).get(c, str(c)) for c in classes]
    ax.set_xticks(ticks, labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    half = matrix.max() / 2 if matrix.size else 0
    for i in ticks:
        for j in ticks:
            colour = "white" if matrix[i, j] > half else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(f"Confusion matrix ({SPLIT})")
    return png(fig)


def _fpr(row: dict[str, Any]) -> float | None:
    negatives = row["fp"] + row["tn"]
    return row["fp"] / negatives if negatives else None


def curve_figures(rows: list[dict[str, Any]], threshold: float) -> tuple[str, str, str]:
    """(PR figure, ROC figure, caption) from evaluation rows.

    Binary runs draw the threshold sweep as curves and mark the row nearest
    ``threshold``; multi-class runs show one one-vs-rest point per class.
    """
    pr_fig, pr = figure()
    roc_fig, roc = figure()
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
            f"{fmt(marked['precision'])}, recall {fmt(marked['recall'])}, F1 {fmt(marked['f1'])})."
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
        ax.set_title(f"{title} ({SPLIT})")
        ax.grid(alpha=0.3)
        if binary:
            ax.legend(loc="lower left" if ax is pr else "lower right")
    return png(pr_fig), png(roc_fig), caption


def thumbnail(pixels: bytes, height: int, width: int, channels: int) -> str:
    from PIL import Image

    arr = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, channels)
    image = Image.fromarray(arr[:, :, 0] if channels == 1 else arr)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def fmt(v: Any) -> str:
    """A value as the report prints it: rates to 4 decimals, missing as '-'."""
    import json

    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)
