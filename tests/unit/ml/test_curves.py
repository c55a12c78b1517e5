"""signdb.ml.curves draws scikit-learn's ROC and PR curves, point for point."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from signdb.errors import InvalidArgument
from signdb.ml.curves import ClassCurves, class_curves, one_vs_rest_curves


def make_case(seed: int, n: int, k: int, grid: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities; ``grid`` rounds them to steps of 1/grid (ties)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if grid is not None:
        proba = np.stack([rng.multinomial(grid, row) for row in proba]) / grid
    return y, proba


CASES = {
    "binary": make_case(1, 200, 2),
    "ten_class": make_case(2, 300, 10),
    "ties": make_case(3, 250, 4, grid=10),
    "heavy_ties": make_case(4, 100, 3, grid=2),
    "n2": make_case(5, 2, 2),
}


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_curves_equal_sklearn_for_every_class(name: str) -> None:
    y, proba = CASES[name]
    curves = one_vs_rest_curves(y, proba)
    assert [c.class_index for c in curves] == list(range(proba.shape[1]))
    for c in curves:
        positive, score = y == c.class_index, proba[:, c.class_index]
        if not 0 < positive.sum() < len(y):
            continue  # one-sided classes: see the tests below
        fpr, tpr, thresholds = roc_curve(positive, score, drop_intermediate=False)
        assert_same(c.roc_fpr, fpr)
        assert_same(c.roc_tpr, tpr)
        assert c.roc_thresholds[0] == np.inf
        assert_same(c.roc_thresholds[1:], thresholds[1:])
        precision, recall, pr_thresholds = precision_recall_curve(positive, score)
        assert_same(c.pr_precision, precision)
        assert_same(c.pr_recall, recall)
        assert_same(c.pr_thresholds, pr_thresholds)
        assert c.roc_auc == pytest.approx(roc_auc_score(positive, score), abs=1e-9)
        assert c.average_precision == pytest.approx(
            average_precision_score(positive, score), abs=1e-9
        )
        assert (c.positives, c.negatives) == (positive.sum(), len(y) - positive.sum())


def test_the_curves_start_and_end_where_sklearn_puts_them() -> None:
    c = one_vs_rest_curves(*CASES["ten_class"])[4]
    # ROC starts at (0, 0) with the threshold inf and ends at (1, 1).
    assert (c.roc_fpr[0], c.roc_tpr[0], c.roc_thresholds[0]) == (0.0, 0.0, np.inf)
    assert (c.roc_fpr[-1], c.roc_tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(c.roc_thresholds) < 0)
    # PR: thresholds increasing, one point more than thresholds, ending at (P=1, R=0).
    assert len(c.pr_precision) == len(c.pr_recall) == len(c.pr_thresholds) + 1
    assert (c.pr_precision[-1], c.pr_recall[-1]) == (1.0, 0.0)
    assert np.all(np.diff(c.pr_thresholds) > 0)


def test_a_class_without_positives_has_no_curves() -> None:
    y, proba = CASES["ten_class"]
    y = np.where(y == 6, 7, y)
    c = one_vs_rest_curves(y, proba)[6]
    assert c.positives == 0
    fields = ("roc_fpr", "roc_tpr", "roc_thresholds", "pr_precision", "pr_recall", "pr_thresholds")
    assert all(getattr(c, f) is None for f in fields)
    assert c.roc_auc is None and c.average_precision is None
    with warnings.catch_warnings(record=True) as caught:  # sklearn: "undefined" both
        warnings.simplefilter("always")
        assert np.isnan(roc_auc_score(y == 6, proba[:, 6]))
        average_precision_score(y == 6, proba[:, 6])
    assert len(caught) >= 2


def test_a_class_without_negatives_has_a_pr_curve_only() -> None:
    y, proba = CASES["binary"]
    y = np.ones_like(y)
    c = one_vs_rest_curves(y, proba)[1]
    assert c.roc_fpr is None and c.roc_auc is None and c.negatives == 0
    precision, recall, thresholds = precision_recall_curve(y == 1, proba[:, 1])
    assert_same(c.pr_precision, precision)
    assert_same(c.pr_recall, recall)
    assert c.average_precision == 1.0 == average_precision_score(y == 1, proba[:, 1])


def test_class_curves_are_read_only_and_not_compared_by_value() -> None:
    y, proba = CASES["binary"]
    c = class_curves(y == 1, proba[:, 1])
    assert isinstance(c, ClassCurves) and c.class_index == 1
    with pytest.raises(ValueError, match="read-only"):
        c.roc_tpr[0] = 0.5
    assert c != class_curves(y == 1, proba[:, 1])  # identity, not an ambiguous array ==


def test_one_vs_rest_curves_checks_its_inputs() -> None:
    y, proba = CASES["binary"]
    with pytest.raises(InvalidArgument, match="y_true must have shape"):
        one_vs_rest_curves(y[:-1], proba)
    with pytest.raises(InvalidArgument, match="class index 2"):
        one_vs_rest_curves(np.full(len(y), 2), proba)
