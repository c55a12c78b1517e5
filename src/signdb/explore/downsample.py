"""Min/max downsampling of a metric series for charts: the shape kept, the points bounded.

A series is cut into at most ``points // 2`` equal ranges of steps; each range
keeps its lowest and its highest point, at the steps where they occur. Spikes
and dips survive (an average would hide a divergence), and a chart drawn from
the result looks like one drawn from every point at any width up to
``points // 2`` pixels. The input may be the points themselves or summaries
of consecutive steps (``metric_buckets``), which carry the same two extremes.

>>> steps = np.arange(10)
>>> values = np.array([0., 9, 1, 2, 3, -5, 4, 5, 6, 7])
>>> out_steps, out_values = minmax(Extremes.of_points(steps, values), 4)
>>> out_steps.tolist(), out_values.tolist()
([0, 1, 5, 9], [0.0, 9.0, -5.0, 7.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Extremes:
    """Consecutive ranges of a series, each with its first step and its two extremes."""

    first_step: np.ndarray
    min_step: np.ndarray
    min_value: np.ndarray
    max_step: np.ndarray
    max_value: np.ndarray

    @classmethod
    def of_points(cls, steps: np.ndarray, values: np.ndarray) -> Extremes:
        return cls(steps, steps, values, steps, values)

    def __len__(self) -> int:
        return len(self.first_step)


def minmax(ranges: Extremes, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` (steps, values), by step: each of ``points // 2`` step ranges'
    minimum and maximum. Points of a series that short come back as they are."""
    if len(ranges) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    if np.array_equal(ranges.min_step, ranges.max_step) and len(ranges) <= points:
        order = np.argsort(ranges.min_step, kind="stable")
        return ranges.min_step[order], ranges.min_value[order]
    k = max(1, points // 2)
    low, high = int(ranges.first_step.min()), int(ranges.first_step.max())
    target = (ranges.first_step - low) * k // (high - low + 1)
    lows = _extreme(target, ranges.min_value, ranges.min_step, smallest=True)
    highs = _extreme(target, ranges.max_value, ranges.max_step, smallest=False)
    steps = np.concatenate([lows[0], highs[0]])
    values = np.concatenate([lows[1], highs[1]])
    order = np.lexsort((values, steps))
    steps, values = steps[order], values[order]
    keep = np.r_[True, (steps[1:] != steps[:-1]) | (values[1:] != values[:-1])]
    return steps[keep], values[keep]


def _extreme(
    target: np.ndarray, values: np.ndarray, steps: np.ndarray, *, smallest: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per target range, the (step, value) with the smallest (or largest) value."""
    key = values if smallest else -values
    order = np.lexsort((steps, key, target))
    first = np.r_[True, target[order][1:] != target[order][:-1]]
    chosen = order[first]
    return steps[chosen], values[chosen]
