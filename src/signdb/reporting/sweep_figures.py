"""The sweep report's figures: objective against each parameter, parallel coordinates, and the
best trials' learning curves. matplotlib's default palette on white; PNG data URIs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from signdb.reporting.figures import figure, png

#: One trial as the figures take it: its number, state, objective and parameters.
Trial = dict[str, Any]


def _axis(values: Sequence[Any], spec: dict[str, Any]) -> tuple[np.ndarray, list[str] | None, bool]:
    """(positions, tick labels for choices or None, log scale) of one parameter's values.

    Choices sit at their index in the order the sweep lists them.
    """
    if spec["kind"] == "choice":
        labels = [json.dumps(c) for c in spec["choices"]]
        return np.array([labels.index(json.dumps(v)) for v in values], float), labels, False
    return np.array(values, float), None, spec["kind"] == "loguniform"


def objective_figure(trials: list[Trial], space: dict[str, dict[str, Any]], objective: str) -> str:
    """One panel per searched parameter: each finished trial's objective at its value."""
    names = sorted(space)
    fig, axes = figure(size=(12, 4), ncols=len(names))
    axes = axes[0]
    for ax, name in zip(axes, names, strict=True):
        for state, style in (("COMPLETE", {"marker": "o"}), ("PRUNED", {"marker": "x"})):
            chosen = [t for t in trials if t["state"] == state and name in t["params"]]
            if not chosen or not any(t["value"] is not None for t in chosen):
                continue
            chosen = [t for t in chosen if t["value"] is not None]
            x, labels, log = _axis([t["params"][name] for t in chosen], space[name])
            ax.scatter(
                x,
                [t["value"] for t in chosen],
                label=state.lower(),
                alpha=0.8,
                color="C0" if state == "COMPLETE" else "0.6",
                **style,
            )
            if labels is not None:
                ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
            if log:
                ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(objective)
    if any(t["state"] == "PRUNED" and t["value"] is not None for t in trials):
        axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{objective} of each trial against each parameter")
    return png(fig)


def parallel_figure(trials: list[Trial], space: dict[str, dict[str, Any]], objective: str) -> str:
    """Parallel coordinates: one line per complete trial across its parameters and objective,
    coloured by the objective (brighter is better)."""
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    names = sorted(space)
    fig, ax = figure()
    if not done:
        ax.text(0.5, 0.5, "no complete trials yet", ha="center", va="center")
        return png(fig)
    columns: list[np.ndarray] = []
    ticks: list[list[tuple[float, str]]] = []  # (height in [0, 1], label) per axis
    for name in names:
        x, labels, log = _axis([t["params"].get(name) for t in done], space[name])
        if labels is not None:
            span = max(len(labels) - 1, 1)
            columns.append(x / span)
            ticks.append([(i / span, label) for i, label in enumerate(labels)])
            continue
        if log:
            x = np.log10(x)
        low, high = float(np.min(x)), float(np.max(x))
        columns.append((x - low) / (high - low or 1.0))
        shown = [10**low, 10**high] if log else [low, high]
        ticks.append([(0.0, f"{shown[0]:.3g}"), (1.0, f"{shown[1]:.3g}")])
    values = np.array([t["value"] for t in done])
    low, high = float(values.min()), float(values.max())
    columns.append((values - low) / ((high - low) or 1.0))
    ticks.append([(0.0, f"{low:.3f}"), (1.0, f"{high:.3f}")])
    data = np.stack(columns, axis=1)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    order = np.argsort(values)  # the best drawn last, on top
    for i in order:
        ax.plot(range(data.shape[1]), data[i], color=cmap(data[i, -1]), alpha=0.8, lw=1.2)
    labels = [*names, objective]
    ax.set_xticks(range(len(labels)), labels)
    for j, axis_ticks in enumerate(ticks):
        ax.axvline(j, color="0.7", lw=0.8)
        for height, label in axis_ticks:
            ax.annotate(label, (j, height), xytext=(3, 2), textcoords="offset points", fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Parallel coordinates of {len(done)} complete trials")
    return png(fig)


def best_curves_figure(
    curves: list[tuple[str, dict[str, tuple[list[int], list[float]]]]], metric: str
) -> str:
    """The learning curves (``metric`` on val, and the cost) of the best trials' first runs."""
    fig, ax = figure()
    cost_ax = ax.twinx()
    for i, (label, series) in enumerate(curves):
        colour = f"C{i % 10}"
        if metric in series:
            steps, values = series[metric]
            ax.plot(
                steps,
                values,
                "-",
                color=colour,
                label=label,
                marker="." if len(steps) < 30 else None,
            )
        if "cost" in series:
            steps, values = series["cost"]
            cost_ax.plot(steps, values, ":", color=colour, alpha=0.6, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{metric} (solid)")
    cost_ax.set_ylabel("cost (dotted)")
    if curves:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no complete trials yet", ha="center", va="center")
    ax.grid(alpha=0.3)
    ax.set_title(f"Learning curves of the best {len(curves)} trials (repeat 0)")
    return png(fig)
