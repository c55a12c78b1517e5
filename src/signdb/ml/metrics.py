"""Classification metrics in plain numpy: the counts every evaluation row is made of.

Like :mod:`sklearn.metrics`, these functions take labels and scores and know
nothing of databases. Binary runs are judged at every threshold of a sweep
(an image is positive when its probability of the positive class, the second
of ``classes``, is ``>= threshold``); multi-class runs one-vs-rest per class at
the argmax decision.

Examples
--------
>>> parse_thresholds("0:1:0.25").tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
>>> parse_thresholds("0.6:0.9:0.1").tolist()  # 0.5 is always swept
[0.5, 0.6, 0.7, 0.8, 0.9]
>>> import numpy as np
>>> tp, fp, tn, fn = binary_counts(
...     np.array([True, True, False, False]), np.array([0.9, 0.4, 0.6, 0.1]), np.array([0.5])
... )
>>> tp.tolist(), fp.tolist(), tn.tolist(), fn.tolist()
([1], [1], [1], [1])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from signdb.errors import InvalidArgument

DEFAULT_THRESHOLDS = "0:1:0.01"
#: Thresholds are rounded so that 0.1 * 3 is stored as 0.3 and 0.5 is exactly 0.5.
_THRESHOLD_DECIMALS = 10


def parse_thresholds(spec: str) -> np.ndarray:
    """``start:stop:step`` (stop included) plus 0.5, sorted and unique."""
    parts = spec.split(":")
    hint = "pass --thresholds START:STOP:STEP, e.g. 0:1:0.01"
    if len(parts) != 3:
        raise InvalidArgument(f"--thresholds must be START:STOP:STEP, got {spec!r}; {hint}")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise InvalidArgument(f"--thresholds takes three numbers, got {spec!r}; {hint}") from None
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise InvalidArgument(f"--thresholds must be finite numbers, got {spec!r}; {hint}")
    if not 0 <= start < stop <= 1:
        raise InvalidArgument(
            f"--thresholds needs 0 <= START < STOP <= 1, got START {start:g} and STOP {stop:g}; "
            f"{hint}"
        )
    if step <= 0:
        raise InvalidArgument(f"--thresholds STEP must be > 0, got {step:g}; {hint}")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > 100_000:
        raise InvalidArgument(
            f"--thresholds {spec} makes {count} thresholds; use a STEP of at least "
            f"{(stop - start) / 100_000:g}"
        )
    values = np.round(start + step * np.arange(count), _THRESHOLD_DECIMALS)
    return np.unique(np.clip(np.append(values, 0.5), 0.0, 1.0))


def binary_counts(
    positive: np.ndarray, probability: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, TN, FN at every threshold; an image is predicted positive when p >= threshold.

    Sorting once and binary-searching every threshold costs O((n + m) log n)
    instead of the O(n m) of comparing each image with each threshold.
    """
    positive = np.asarray(positive, dtype=bool)
    probability = np.asarray(probability, dtype=np.float64)
    pos = np.sort(probability[positive])
    neg = np.sort(probability[~positive])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    return tp, fp, len(neg) - fp, len(pos) - tp


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts of class indices: rows actual, columns predicted."""
    actual = np.asarray(actual, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    return np.bincount(actual * k + predicted, minlength=k * k).reshape(k, k)


def one_vs_rest_counts(
    labels: np.ndarray, predicted: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, TN, FN per class (in ``classes`` order) from one confusion matrix."""
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    actual = np.fromiter((index[int(v)] for v in labels), dtype=np.int64, count=len(labels))
    guess = np.fromiter((index[int(v)] for v in predicted), dtype=np.int64, count=len(predicted))
    matrix = confusion_matrix(actual, guess, k)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    return tp, fp, len(labels) - tp - fp - fn, fn


def decide(proba: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, probability) as ``predictions`` stores them.

    Binary: the positive-class probability, positive when it is >= 0.5 (the
    rule of the 0.5 evaluation row, so ``confusion`` and it agree).
    Multi-class: the argmax label and its probability.
    """
    labels = np.asarray(classes)
    if len(labels) == 2:
        p = proba[:, 1]
        return np.where(p >= 0.5, labels[1], labels[0]), p
    best = np.argmax(proba, axis=1)
    return labels[best], proba[np.arange(len(proba)), best]


def evaluation_rows(
    labels: np.ndarray,
    predicted: np.ndarray,
    probability: np.ndarray,
    classes: Sequence[int],
    thresholds: np.ndarray,
) -> list[tuple[int, float | None, int, int, int, int]]:
    """``(positive_class, threshold, tp, fp, tn, fn)`` rows for ``signdb.evaluations``."""
    if len(classes) == 2:
        tp, fp, tn, fn = binary_counts(labels == classes[1], probability, thresholds)
        return [
            (int(classes[1]), float(t), int(a), int(b), int(c), int(d))
            for t, a, b, c, d in zip(thresholds, tp, fp, tn, fn, strict=True)
        ]
    tp, fp, tn, fn = one_vs_rest_counts(labels, predicted, classes)
    return [
        (int(c), None, int(a), int(b), int(x), int(d))
        for c, a, b, x, d in zip(classes, tp, fp, tn, fn, strict=True)
    ]


def headline(
    labels: np.ndarray, proba: np.ndarray, classes: Sequence[int]
) -> dict[str, float | None]:
    """Accuracy, precision, recall and F1 exactly as ``evaluate`` stores its headline:
    binary at threshold 0.5 for the positive class, else overall accuracy and the
    macro average over classes of the one-vs-rest rates that are defined.

    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    >>> headline(np.array([0, 1, 1, 1]), proba, [0, 1])
    {'accuracy': 0.75, 'precision': 1.0, 'recall': 0.6666666666666666, 'f1': 0.8}
    """
    labels = np.asarray(labels)
    predicted, _ = decide(proba, classes)
    if len(classes) == 2:
        positive = labels == classes[1]
        guessed = predicted == classes[1]
        tp = np.count_nonzero(positive & guessed)
        tp, fp, fn = (
            np.array([tp]),
            np.array([np.count_nonzero(~positive & guessed)]),
            np.array([np.count_nonzero(positive & ~guessed)]),
        )
    else:
        tp, fp, _, fn = one_vs_rest_counts(labels, predicted, classes)

    def rate(num: np.ndarray, den: np.ndarray) -> float | None:
        defined = den > 0
        return float(np.mean(num[defined] / den[defined])) if defined.any() else None

    n = len(labels)
    return {
        "accuracy": float(np.count_nonzero(predicted == labels) / n) if n else None,
        "precision": rate(tp, tp + fp),
        "recall": rate(tp, tp + fn),
        "f1": rate(2 * tp, 2 * tp + fp + fn),
    }
