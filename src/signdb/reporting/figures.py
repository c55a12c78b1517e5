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


def class_curve_figures(
    points: list[dict[str, Any]],
    areas: dict[tuple[int, str], float | None],
    names: dict[int, str],
    marked: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(ROC figure, PR figure): one threshold-free curve per class, its area in the legend.

    ``points`` are ``class_curves`` rows; ``areas`` maps (label, metric) to the
    class's ``roc_auc`` / ``average_precision``. A binary run draws its positive
    class and marks ``marked`` (an evaluation row: the chosen threshold).
    """
    roc_fig, roc = figure()
    pr_fig, pr = figure()
    by_class: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        by_class.setdefault(p["label"], []).append(p)
    many = len(by_class) > 6
    for i, (label, rows) in enumerate(sorted(by_class.items())):
        name = names.get(label, str(label))
        colour = f"C{i % 10}"
        auc, ap = areas.get((label, "roc_auc")), areas.get((label, "average_precision"))
        if auc is not None:
            roc.plot([r["fpr"] for r in rows], [r["tpr"] for r in rows], color=colour, lw=1.2,
                     label=f"{name} (AUC {auc:.3f})")  # fmt: skip
        curve = [r for r in rows if r["precision"] is not None]
        if ap is not None and curve:
            pr.step([r["tpr"] for r in curve], [r["precision"] for r in curve], where="post",
                    color=colour, lw=1.2, label=f"{name} (AP {ap:.3f})")  # fmt: skip
    if marked is not None:
        label = f"threshold {marked['threshold']:.2f}"
        roc.plot([_fpr(marked)], [marked["recall"]], "o", color="black", ms=5, label=label)
        if marked["precision"] is not None:
            pr.plot(
                [marked["recall"]], [marked["precision"]], "o", color="black", ms=5, label=label
            )
    roc.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
    for ax, title, xlabel, ylabel in (
        (roc, "ROC, one class against the rest", "false positive rate", "true positive rate"),
        (pr, "Precision-recall, one class against the rest", "recall", "precision"),
    ):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({SPLIT})")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is roc else "lower left", fontsize=7 if many else 8)
    return png(roc_fig), png(pr_fig)


def _fpr(row: dict[str, Any]) -> float | None:
    negatives = row["fp"] + row["tn"]
    return row["fp"] / negatives if negatives else None


def reliability_figure(bins: list[dict[str, Any]], ece: float | None, n_bins: int = 15) -> str:
    """Accuracy against confidence per bin, with the bins' sizes; a perfectly calibrated
    model sits on the diagonal. The ECE is their size-weighted gap."""
    fig, ax = figure()
    width = 1 / n_bins
    ax.bar([(b["bin"] + 0.5) * width for b in bins], [b["accuracy"] for b in bins],
           width=width * 0.9, color="C0", alpha=0.8, label="accuracy in the bin")  # fmt: skip
    ax.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], "o",
            color="C1", ms=4, label="(mean confidence, accuracy)")  # fmt: skip
    ax.plot([0, 1], [0, 1], ":", color="0.5", lw=1, label="perfect calibration")
    for b in bins:
        ax.annotate(str(b["images"]), ((b["bin"] + 0.5) * width, b["accuracy"]),
                    ha="center", va="bottom", fontsize=6, color="0.3")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("accuracy")
    shown = "-" if ece is None else f"{ece:.4f}"
    ax.set_title(f"Reliability ({SPLIT}): ECE {shown} over {n_bins} bins")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


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
