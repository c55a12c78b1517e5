"""ROC and precision-recall curves one class against the rest, in plain numpy.

The inputs follow :mod:`signdb.ml.scores`: ``y_true`` holds class *indices*
``0..k-1``, ``proba`` is ``(n, k)`` float64 with rows summing to 1 and columns
in class order. A class's score is its own column of ``proba``; for a binary
run (``k == 2``) callers use only the positive class, index 1.

Each curve equals scikit-learn's (the tests compare them point for point):

* ROC is ``roc_curve(y_true == c, proba[:, c], drop_intermediate=False)``: one
  point per distinct score, highest first, an image being positive when its
  score is ``>= threshold``. The curve starts at ``(0, 0)`` with the threshold
  ``inf`` (nothing predicted positive), so ``roc_thresholds`` is decreasing and
  as long as ``roc_fpr``.
* PR is ``precision_recall_curve(y_true == c, proba[:, c])`` (its default
  ``drop_intermediate=False``): thresholds *increasing*, and the arrays of
  precision and recall have one more element than ``pr_thresholds``, a final
  ``(precision 1, recall 0)`` point that belongs to no threshold.
* ``roc_auc`` is the trapezoidal area under the ROC curve (tied scores give a
  diagonal segment, i.e. count half), ``average_precision`` the step sum
  ``sum((R[i] - R[i+1]) * P[i])`` over the PR points, without interpolation.

A class with no positive image has no curve at all (its arrays and both areas
are ``None``): recall is 0/0 at every threshold. A class with no negative image
has a PR curve (precision is 1 throughout, average precision 1.0) but no ROC
curve, the false-positive rate being 0/0.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1])
>>> p1 = np.array([0.1, 0.4, 0.35, 0.8])
>>> c = one_vs_rest_curves(y, np.stack([1 - p1, p1], axis=1))[1]
>>> c.roc_thresholds.tolist(), c.roc_tpr.tolist(), c.roc_fpr.tolist()
([inf, 0.8, 0.4, 0.35, 0.1], [0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0])
>>> c.roc_auc, c.average_precision
(0.75, 0.8333333333333333)
>>> c.pr_recall.tolist(), c.pr_thresholds.tolist()
([1.0, 1.0, 0.5, 0.5, 0.0], [0.1, 0.35, 0.4, 0.8])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signdb.errors import InvalidArgument

#: How far a row of ``proba`` may sum from 1 (float32 softmax outputs pass).
ROW_SUM_TOLERANCE = 1e-4


def check_inputs(
    y_true: object, proba: object, y_pred: object | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(y_true, proba, y_pred)`` as int64, float64, int64 arrays, or InvalidArgument.

    Shared with :mod:`signdb.ml.scores`, so both refuse the same inputs with
    the same messages.
    """
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[1] < 2 or proba.shape[0] < 1:
        raise InvalidArgument(
            f"proba must have shape (n images, k classes) with n >= 1 and k >= 2, got shape "
            f"{proba.shape}; pass one row of class probabilities per image"
        )
    if not np.issubdtype(proba.dtype, np.floating):
        raise InvalidArgument(
            f"proba must be a float array, got dtype {proba.dtype}; pass probabilities as float64"
        )
    proba = proba.astype(np.float64, copy=False)
    n, k = proba.shape
    if not np.all(np.isfinite(proba)):
        raise InvalidArgument(f"proba has {int(np.sum(~np.isfinite(proba)))} NaN or inf values")
    if proba.min() < 0 or proba.max() > 1:
        raise InvalidArgument(
            f"proba values must lie in [0, 1], got min {proba.min():g} and max {proba.max():g}; "
            "pass probabilities (softmax outputs), not logits"
        )
    off = np.abs(proba.sum(axis=1) - 1.0)
    if off.max() > ROW_SUM_TOLERANCE:
        row = int(np.argmax(off))
        raise InvalidArgument(
            f"row {row} of proba sums to {proba[row].sum():.6g}, not 1 (tolerance "
            f"{ROW_SUM_TOLERANCE:g}); normalise each row to sum to 1"
        )
    y_true = _check_indices("y_true", y_true, n, k)
    y_pred = None if y_pred is None else _check_indices("y_pred", y_pred, n, k)
    return y_true, proba, y_pred


def _check_indices(name: str, values: object, n: int, k: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise InvalidArgument(
            f"{name} must have shape ({n},) to match proba's {n} rows, got shape {values.shape}"
        )
    if not np.issubdtype(values.dtype, np.integer):
        raise InvalidArgument(
            f"{name} must hold integer class indices, got dtype {values.dtype}; "
            f"map labels to 0..{k - 1} in the order of proba's columns"
        )
    if values.min() < 0 or values.max() >= k:
        bad = int(values[(values < 0) | (values >= k)][0])
        raise InvalidArgument(
            f"{name} holds class index {bad}, outside 0..{k - 1} (proba has {k} columns)"
        )
    return values.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields would be ambiguous
class ClassCurves:
    """One class's ROC and PR curves against the rest (read-only arrays)."""

    class_index: int
    positives: int
    negatives: int
    roc_fpr: np.ndarray | None
    roc_tpr: np.ndarray | None
    roc_thresholds: np.ndarray | None
    pr_precision: np.ndarray | None
    pr_recall: np.ndarray | None
    pr_thresholds: np.ndarray | None
    roc_auc: float | None
    average_precision: float | None


def ranked_counts(
    positive: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tps, fps, thresholds)`` at each distinct score, highest score first.

    ``tps[i]`` and ``fps[i]`` count the positive and negative images scoring
    ``>= thresholds[i]``. Tied scores share one threshold, so the order among
    them does not matter (scikit-learn's ``confusion_matrix_at_thresholds``).
    """
    order = np.argsort(score, kind="stable")[::-1]
    ranked = score[order]
    last_of_each = np.append(np.flatnonzero(np.diff(ranked)), len(ranked) - 1)
    tps = np.cumsum(positive[order], dtype=np.float64)[last_of_each]
    fps = 1.0 + last_of_each - tps  # images above the threshold that are not positive
    return tps, fps, ranked[last_of_each]


def class_curves(positive: np.ndarray, score: np.ndarray, class_index: int = 1) -> ClassCurves:
    """The curves of one class from a boolean ``positive`` mask and its ``score`` column."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    roc: tuple[np.ndarray | None, ...] = (None, None, None)
    pr: tuple[np.ndarray | None, ...] = (None, None, None)
    roc_auc = average_precision = None
    if n_pos:
        tps, fps, thresholds = ranked_counts(positive, score)
        # fps + tps is the number of images at or above a threshold: never 0.
        precision = np.append((tps / (tps + fps))[::-1], 1.0)
        recall = np.append((tps / n_pos)[::-1], 0.0)
        pr = (precision, recall, thresholds[::-1].copy())
        # -0.0 from rounding is clipped, as scikit-learn does.
        average_precision = max(0.0, float(-np.sum(np.diff(recall) * precision[:-1])))
        if n_neg:
            fpr = np.append(0.0, fps) / n_neg
            tpr = np.append(0.0, tps) / n_pos
            roc = (fpr, tpr, np.append(np.inf, thresholds))
            roc_auc = float(np.trapezoid(tpr, fpr))
    for array in (*roc, *pr):
        if array is not None:
            array.setflags(write=False)
    return ClassCurves(class_index, n_pos, n_neg, *roc, *pr, roc_auc, average_precision)


def one_vs_rest_curves(y_true: np.ndarray, proba: np.ndarray) -> list[ClassCurves]:
    """ROC and PR curves of every class ``c`` (``y_true == c`` against ``proba[:, c]``)."""
    y_true, proba, _ = check_inputs(y_true, proba)
    return [class_curves(y_true == c, proba[:, c], c) for c in range(proba.shape[1])]
