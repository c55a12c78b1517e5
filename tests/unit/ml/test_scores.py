"""signdb.ml.scores gives scikit-learn's numbers, and None exactly where scikit-learn warns.

scikit-learn and scipy are references only: the tests call them on the same
inputs, record their warnings, and decide from those which of our values must
be None (a warning, a NaN or a ValueError) and which must equal theirs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

from signdb.errors import InvalidArgument
from signdb.ml.scores import (
    BOOTSTRAP_METRICS,
    SCORE_NAMES,
    bootstrap_intervals,
    calibration_bins,
    classification_scores,
    mcnemar_exact,
    paired_bootstrap_difference,
)

Case = tuple[np.ndarray, np.ndarray, np.ndarray]  # y_true, y_pred, proba

# ---------------------------------------------------------------- test data


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def decide(proba: np.ndarray) -> np.ndarray:
    """signdb's rule: binary positive when p >= 0.5, else the argmax."""
    if proba.shape[1] == 2:
        return (proba[:, 1] >= 0.5).astype(np.int64)
    return proba.argmax(axis=1)


def realistic(seed: int, n: int, k: int, skill: float = 1.5, weights=None) -> Case:
    """A model that ranks the true class ``skill`` logits higher than noise."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=weights)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    proba = softmax(logits)
    return y, decide(proba), proba


def shrink_column(case: Case, column: int) -> Case:
    """The same case with ``column`` (almost) never the argmax: the class is never predicted."""
    y, _, proba = case
    proba = proba.copy()
    proba[:, column] *= 1e-3
    proba /= proba.sum(axis=1, keepdims=True)
    return y, decide(proba), proba


def peaked(y_pred: np.ndarray, k: int, top: float = 0.91) -> np.ndarray:
    proba = np.full((len(y_pred), k), (1 - top) / (k - 1))
    proba[np.arange(len(y_pred)), y_pred] = top
    return proba


def build_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {
        "binary": realistic(1, 200, 2),
        "ten_class": realistic(2, 300, 10),
        "imbalanced_binary": realistic(3, 400, 2, weights=[0.95, 0.05]),
    }
    w = 0.5 ** np.arange(10)
    cases["imbalanced_ten"] = realistic(4, 500, 10, weights=w / w.sum())
    y, pred, proba = realistic(5, 300, 10, skill=3.0)
    # Class 3's images relabelled 4: absent from y_true, but still predicted.
    cases["absent_but_predicted"] = (np.where(y == 3, 4, y), pred, proba)
    cases["absent_unpredicted"] = shrink_column(cases["absent_but_predicted"], 3)
    cases["never_predicted"] = shrink_column(realistic(6, 300, 10), 2)
    cases["never_predicted_binary"] = shrink_column(realistic(7, 50, 2), 1)
    for k in (2, 10):
        y = np.random.default_rng(8).integers(0, k, 120)
        cases[f"perfect_{k}"] = (y, y, peaked(y, k))
        cases[f"all_wrong_{k}"] = (y, (y + 1) % k, peaked((y + 1) % k, k))
    rng = np.random.default_rng(9)
    y, _, proba = realistic(10, 250, 10)
    # Probabilities in steps of 0.1: many ties, and zeros that log_loss must clip.
    tied = np.stack([rng.multinomial(10, row) for row in proba]) / 10
    cases["ties_ten"] = (y, decide(tied), tied)
    y = rng.integers(0, 2, 150)
    p1 = rng.choice([0.0, 0.25, 0.5, 0.5, 0.75, 1.0], size=150)
    binary = np.stack([1 - p1, p1], axis=1)
    cases["ties_binary"] = (y, decide(binary), binary)
    for n in (1, 2):
        for k in (2, 10):
            cases[f"n{n}_k{k}"] = realistic(11 + n, n, k)
    cases["n2_k2_wrong"] = (np.array([0, 1]), np.array([1, 0]), peaked(np.array([1, 0]), 2))
    y, pred, proba = realistic(14, 80, 10)
    cases["one_class_in_y_true"] = (np.full(80, 7), pred, proba)
    y, pred, proba = realistic(15, 60, 2)
    cases["binary_only_positives"] = (np.ones(60, dtype=np.int64), pred, proba)
    cases["binary_only_negatives"] = (np.zeros(60, dtype=np.int64), pred, proba)
    zeros = np.zeros(30, dtype=np.int64)
    cases["constant_agreement"] = (zeros, zeros, peaked(zeros, 3, 0.8))
    return cases


CASES = build_cases()

# ---------------------------------------------------------------- the reference


#: scikit-learn's warnings that a value is undefined (besides UndefinedMetricWarning).
UNDEFINED_WARNINGS = (
    "y_pred contains classes not in y_true",  # balanced_accuracy_score drops that class
    "No positive class found in y_true",  # precision_recall_curve: recall 0/0
)
#: Warnings about something else: the value that comes with them stands.
OTHER_WARNINGS = (
    # confusion_matrix without labels, inside balanced_accuracy_score and
    # matthews_corrcoef, when y_true and y_pred are one same class: a remark
    # about the matrix's shape, and the score (1.0, resp. 0.0) is defined.
    "A single label was found in 'y_true' and 'y_pred'",
)


def reference(fn: Callable[[], float]) -> float | None:
    """scikit-learn's value, or None when it warns the value is undefined, gives NaN or raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn()
        except ValueError:
            return None
    undefined = False
    for w in caught:
        message = str(w.message)
        if issubclass(w.category, UndefinedMetricWarning | RuntimeWarning):
            undefined = True
        elif any(m in message for m in UNDEFINED_WARNINGS):
            undefined = True
        else:  # an unknown warning is a question for whoever reads this test
            assert any(m in message for m in OTHER_WARNINGS), f"unclassified: {w}"
    return None if undefined or math.isnan(value) else float(value)


def sklearn_scores(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray) -> dict:
    k = proba.shape[1]
    labels = list(range(k))
    refs: dict[str, Callable[[], float]] = {
        "accuracy": partial(accuracy_score, y_true, y_pred),
        "balanced_accuracy": partial(balanced_accuracy_score, y_true, y_pred),
        "mcc": partial(matthews_corrcoef, y_true, y_pred),
        "cohen_kappa": partial(cohen_kappa_score, y_true, y_pred, labels=labels),
        "log_loss": partial(log_loss, y_true, proba, labels=labels),
    }
    for average in ("macro", "micro", "weighted"):
        for name, fn in (
            ("precision", precision_score),
            ("recall", recall_score),
            ("f1", f1_score),
        ):
            refs[f"{average}_{name}"] = partial(fn, y_true, y_pred, labels=labels, average=average)
    if k == 2:
        refs["brier"] = partial(brier_score_loss, y_true == 1, proba[:, 1])
        refs["roc_auc"] = partial(roc_auc_score, y_true == 1, proba[:, 1])
        refs["average_precision"] = partial(average_precision_score, y_true == 1, proba[:, 1])
    else:
        refs["brier"] = partial(brier_score_loss, y_true, proba, labels=labels)
        refs["roc_auc"] = partial(
            roc_auc_score, y_true, proba, multi_class="ovr", average="macro", labels=labels
        )
        onehot = label_binarize(y_true, classes=labels)
        refs["average_precision"] = partial(average_precision_score, onehot, proba, average="macro")
    return {name: reference(fn) for name, fn in refs.items()}


def ece_loop(y_true, y_pred, proba, n_bins: int = 15) -> float:
    """The ECE written out with Python loops, bins [b/15, (b+1)/15), the last closed."""
    n = len(y_true)
    conf = [float(proba[i, y_pred[i]]) for i in range(n)]
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        last = b == n_bins - 1
        members = [i for i in range(n) if lo <= conf[i] and (conf[i] < hi or last)]
        if members:
            accuracy = sum(y_true[i] == y_pred[i] for i in members) / len(members)
            confidence = sum(conf[i] for i in members) / len(members)
            total += len(members) / n * abs(accuracy - confidence)
    return total


# ---------------------------------------------------------------- classification_scores


@pytest.fixture(scope="module")
def references() -> dict[str, dict]:
    return {name: sklearn_scores(*case) for name, case in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_equal_sklearn_and_none_where_it_warns(name: str, references) -> None:
    ours = classification_scores(*CASES[name])
    assert list(ours) == list(SCORE_NAMES)
    assert_as_sklearn(ours, references[name])
    assert ours["ece"] == pytest.approx(ece_loop(*CASES[name]), abs=1e-9)


def assert_as_sklearn(ours: dict, theirs: dict) -> None:
    for metric, expected in theirs.items():
        if expected is None:
            assert ours[metric] is None, f"{metric}: sklearn warns, we gave {ours[metric]}"
        else:
            assert ours[metric] == pytest.approx(expected, abs=1e-9), metric


MAYBE_NONE = {
    "balanced_accuracy",
    *(f"{a}_{m}" for a in ("macro", "weighted") for m in ("precision", "recall", "f1")),
    "cohen_kappa",
    "roc_auc",
    "average_precision",
}


def test_the_cases_cover_each_none_rule_both_ways(references) -> None:
    for metric in SCORE_NAMES:
        if metric == "ece":
            continue
        defined = {name for name, ref in references.items() if ref[metric] is not None}
        if metric in MAYBE_NONE:
            assert defined and defined != set(CASES), f"{metric} is tested one way only"
        else:
            assert defined == set(CASES), f"{metric} is undefined in {set(CASES) - defined}"


def test_the_cases_are_what_their_names_say() -> None:
    y, pred, _ = CASES["absent_but_predicted"]
    assert 3 not in y and 3 in pred
    y, pred, _ = CASES["absent_unpredicted"]
    assert 3 not in y and 3 not in pred
    y, pred, _ = CASES["never_predicted"]
    assert 2 in y and 2 not in pred
    y, pred, _ = CASES["never_predicted_binary"]
    assert 1 in y and 1 not in pred
    y, pred, proba = CASES["ties_binary"]
    assert np.sum(proba[:, 1] == 0.5) > 10 and np.all(pred[proba[:, 1] == 0.5] == 1)


def test_y_pred_is_the_callers_not_the_argmax() -> None:
    y, pred, proba = CASES["ties_binary"]  # p = 0.5 is positive, the argmax says class 0
    ours = classification_scores(y, pred, proba)["accuracy"]
    assert ours == accuracy_score(y, pred) != accuracy_score(y, proba.argmax(axis=1))


def scores_of(y_true: list[int], y_pred: list[int], k: int) -> dict:
    """Our scores of a small hand-made case, checked against sklearn's on the way."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    proba = peaked(y_pred, k)
    ours = classification_scores(y_true, y_pred, proba)
    assert_as_sklearn(ours, sklearn_scores(y_true, y_pred, proba))
    return ours


def test_precision_is_none_only_when_a_class_is_never_predicted() -> None:
    s = scores_of([0, 1, 2, 2], [0, 1, 1, 1], k=3)  # class 2 never predicted
    assert s["macro_precision"] is None and s["weighted_precision"] is None
    assert s["macro_recall"] == pytest.approx(2 / 3)
    # F1 of class 2 is 2 tp / (2 tp + fp + fn) = 0 / 2: defined, and sklearn says 0.
    assert s["macro_f1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_recall_and_f1_need_a_class_somewhere() -> None:
    s = scores_of([0, 1, 1, 0], [0, 1, 1, 1], k=3)  # class 2 nowhere
    assert s["macro_recall"] is None and s["weighted_recall"] is None
    assert s["macro_f1"] is None and s["weighted_f1"] is None and s["macro_precision"] is None
    assert s["accuracy"] == s["micro_f1"] == 0.75


def test_balanced_accuracy_skips_absent_classes_unless_predicted() -> None:
    # Class 2 is absent and unpredicted: the mean recall of classes 0 and 1.
    assert scores_of([0, 0, 1, 1], [0, 1, 1, 1], k=3)["balanced_accuracy"] == 0.75
    # Predicting the absent class makes sklearn warn "y_pred contains classes not in y_true".
    assert scores_of([0, 0, 1, 1], [0, 2, 1, 1], k=3)["balanced_accuracy"] is None


def test_mcc_is_zero_not_none_when_one_side_is_constant() -> None:
    s = scores_of([0, 1, 0, 1], [1, 1, 1, 1], k=2)
    assert s["mcc"] == 0.0 == matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1])


def test_kappa_is_none_only_when_both_sides_are_one_same_class() -> None:
    assert scores_of([1, 1, 1], [1, 1, 1], k=4)["cohen_kappa"] is None
    assert scores_of([1, 1, 1], [1, 1, 2], k=4)["cohen_kappa"] == 0.0
    assert scores_of([1, 2], [1, 2], k=4)["cohen_kappa"] == 1.0


def test_ranking_scores_need_both_sides_of_every_class() -> None:
    y, pred, proba = CASES["binary_only_positives"]
    s = classification_scores(y, pred, proba)
    assert s["roc_auc"] is None and s["average_precision"] == 1.0
    s = classification_scores(*CASES["absent_but_predicted"])
    assert s["roc_auc"] is None and s["average_precision"] is None


def test_binary_brier_is_the_positive_class_mean_squared_error() -> None:
    y, pred, proba = CASES["binary"]
    brier = classification_scores(y, pred, proba)["brier"]
    assert brier == pytest.approx(np.mean((proba[:, 1] - y) ** 2), abs=1e-12)
    # The (n, 2) form halves the two-column sum, which is the same number.
    assert brier == pytest.approx(brier_score_loss(y, proba, labels=[0, 1]), abs=1e-9)
    y, pred, proba = CASES["ten_class"]  # k >= 3: the full sum, in [0, 2]
    onehot = np.eye(10)[y]
    expected = np.mean(np.sum((proba - onehot) ** 2, axis=1))
    assert classification_scores(y, pred, proba)["brier"] == pytest.approx(expected, abs=1e-12)


def test_log_loss_clips_a_zero_probability_like_sklearn() -> None:
    proba = np.array([[1.0, 0.0], [0.5, 0.5]])
    s = classification_scores(np.array([1, 1]), np.array([0, 1]), proba)
    eps = np.finfo(np.float64).eps
    assert s["log_loss"] == pytest.approx((-math.log(eps) + math.log(2)) / 2, abs=1e-12)


def test_ece_bins_are_closed_on_the_left_and_the_last_one_at_one() -> None:
    # Confidences right on the edges b / 15, and 1.0 itself.
    p1 = np.append(np.arange(8, 16) / 15, [1.0, 0.5])
    proba = np.stack([1 - p1, p1], axis=1)
    y = np.array([1, 0] * 5)
    pred = decide(proba)
    assert classification_scores(y, pred, proba)["ece"] == pytest.approx(
        ece_loop(y, pred, proba), abs=1e-12
    )
    bins = [row[0] for row in calibration_bins(y, pred, proba)]
    assert bins == [7, 8, 9, 10, 11, 12, 13, 14]  # 0.5 is in bin 7, 1.0 and 15/15 in 14


@pytest.mark.parametrize(
    ("y_true", "y_pred", "proba", "message"),
    [
        ([0, 1], [0, 1], [[1.0], [1.0]], "k >= 2"),
        ([0, 1], [0, 1], np.zeros((0, 2)), "n >= 1"),
        ([0, 1], [0], [[0.5, 0.5], [0.5, 0.5]], r"y_pred must have shape \(2,\)"),
        ([0, 2], [0, 1], [[0.5, 0.5], [0.5, 0.5]], "class index 2, outside 0..1"),
        ([0, -1], [0, 1], [[0.5, 0.5], [0.5, 0.5]], "class index -1"),
        ([0.0, 1.0], [0, 1], [[0.5, 0.5], [0.5, 0.5]], "integer class indices"),
        ([0, 1], [0, 1], [[0.5, 0.6], [0.5, 0.5]], "row 0 of proba sums to 1.1"),
        ([0, 1], [0, 1], [[1.5, -0.5], [0.5, 0.5]], r"lie in \[0, 1\]"),
        ([0, 1], [0, 1], [[np.nan, 0.5], [0.5, 0.5]], "NaN or inf"),
        ([0, 1], [0, 1], [[1, 0], [0, 1]], "float array"),
    ],
)
def test_bad_inputs_are_refused_with_the_fix(y_true, y_pred, proba, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        classification_scores(np.asarray(y_true), np.asarray(y_pred), np.asarray(proba))


def test_rows_summing_to_one_within_the_tolerance_pass() -> None:
    proba = np.array([[0.50004, 0.5], [0.2, 0.8]])
    assert classification_scores(np.array([0, 1]), np.array([0, 1]), proba)["accuracy"] == 1.0


# ---------------------------------------------------------------- calibration_bins


@pytest.mark.parametrize("name", ["ten_class", "ties_ten", "binary", "perfect_10", "n1_k10"])
def test_calibration_table_adds_up_to_the_ece(name: str) -> None:
    y, pred, proba = CASES[name]
    table = calibration_bins(y, pred, proba)
    assert sum(images for _, images, _, _ in table) == len(y)
    assert all(images > 0 for _, images, _, _ in table)
    ece = sum(images / len(y) * abs(acc - conf) for _, images, conf, acc in table)
    assert ece == pytest.approx(classification_scores(y, pred, proba)["ece"], abs=1e-12)


def test_calibration_bins_takes_another_bin_count() -> None:
    y, pred, proba = CASES["ten_class"]
    table = calibration_bins(y, pred, proba, n_bins=4)
    assert {row[0] for row in table} <= {0, 1, 2, 3}
    ece = sum(images / len(y) * abs(acc - conf) for _, images, conf, acc in table)
    assert ece == pytest.approx(ece_loop(y, pred, proba, n_bins=4), abs=1e-12)
    with pytest.raises(InvalidArgument, match="n_bins"):
        calibration_bins(y, pred, proba, n_bins=0)


# ---------------------------------------------------------------- bootstrap_intervals


def naive_bootstrap(case: Case, metrics, n_resamples: int, seed: int) -> dict:
    """One classification_scores per resample, on the same draws."""
    y, pred, proba = case
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_resamples, len(y)))
    values = {m: [] for m in metrics}
    for row in idx:
        s = classification_scores(y[row], pred[row], proba[row])
        for m in metrics:
            if s[m] is not None:
                values[m].append(s[m])
    return {
        m: tuple(np.percentile(v, [2.5, 97.5])) if len(v) >= n_resamples / 2 else None
        for m, v in values.items()
    }


@pytest.mark.parametrize("name", ["ten_class", "binary", "ties_ten"])
def test_bootstrap_resamples_give_the_scores_of_the_resampled_images(name: str) -> None:
    ours = bootstrap_intervals(*CASES[name], metrics=BOOTSTRAP_METRICS, n_resamples=40, seed=3)
    expected = naive_bootstrap(CASES[name], BOOTSTRAP_METRICS, 40, 3)
    for metric in BOOTSTRAP_METRICS:
        assert ours[metric] == pytest.approx(expected[metric], abs=1e-9), metric


def rare_classes_case(counts: list[int], seed: int = 4) -> Case:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    proba = softmax(rng.normal(size=(len(y), len(counts))) + 2 * np.eye(len(counts))[y])
    return y, decide(proba), proba


def test_bootstrap_drops_undefined_resamples_and_gives_up_below_half() -> None:
    metrics = ("macro_recall", "accuracy")
    # One image of class 3 in 40: (39/40)^40 = 36% of resamples miss it and are dropped.
    case = rare_classes_case([13, 13, 13, 1])
    ours = bootstrap_intervals(*case, metrics=metrics, n_resamples=60, seed=1)
    expected = naive_bootstrap(case, metrics, 60, 1)
    assert all(ours[m] == pytest.approx(expected[m], abs=1e-9) for m in metrics)
    assert ours["macro_recall"] is not None
    # Three single-image classes: only ~25% of resamples hold all of them.
    case = rare_classes_case([37, 1, 1, 1])
    ours = bootstrap_intervals(*case, metrics=metrics, seed=1)
    assert ours["macro_recall"] is None and ours["accuracy"] is not None


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    case = CASES["ten_class"]
    metrics = ("accuracy", "macro_f1", "balanced_accuracy", "log_loss", "ece")
    first = bootstrap_intervals(*case, metrics=metrics, seed=5)
    assert bootstrap_intervals(*case, metrics=metrics, seed=5) == first
    assert bootstrap_intervals(*case, metrics=metrics, seed=6) != first


@pytest.mark.parametrize("name", ["ten_class", "binary", "imbalanced_binary"])
def test_bootstrap_intervals_contain_the_point_estimate(name: str) -> None:
    # ECE is left out: resampling inflates it, so its interval may sit above it.
    metrics = [m for m in BOOTSTRAP_METRICS if m != "ece"]
    point = classification_scores(*CASES[name])
    for metric, (lo, hi) in bootstrap_intervals(*CASES[name], metrics=metrics).items():
        assert lo <= point[metric] <= hi, metric


def test_bootstrap_intervals_narrow_as_n_grows() -> None:
    metrics = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "balanced_accuracy")
    small = bootstrap_intervals(*realistic(20, 100, 5), metrics=metrics)
    large = bootstrap_intervals(*realistic(20, 2000, 5), metrics=metrics)
    for m in metrics:
        assert large[m][1] - large[m][0] < 0.5 * (small[m][1] - small[m][0]), m


def test_bootstrap_arguments() -> None:
    case = CASES["binary"]
    assert bootstrap_intervals(*case, n_resamples=0) == {}
    with pytest.raises(InvalidArgument, match="cannot bootstrap 'roc_auc'; choose from accuracy"):
        bootstrap_intervals(*case, metrics=("roc_auc",))
    with pytest.raises(InvalidArgument, match="n_resamples must be >= 0"):
        bootstrap_intervals(*case, n_resamples=-1)
    with pytest.raises(InvalidArgument, match="confidence"):
        bootstrap_intervals(*case, confidence=95)
    assert set(bootstrap_intervals(*case, metrics="accuracy", n_resamples=5)) == {"accuracy"}


# ---------------------------------------------------------------- paired comparison


def paired_case(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.8
    b = np.where(rng.random(n) < 0.7, a, rng.random(n) < 0.7)  # correlated with a
    return a, b


def test_paired_bootstrap_is_reproducible_and_contains_the_difference() -> None:
    a, b = paired_case()
    lo, hi = paired_bootstrap_difference(a, b, seed=2)
    assert paired_bootstrap_difference(a, b, seed=2) == (lo, hi)
    assert paired_bootstrap_difference(a, b, seed=3) != (lo, hi)
    assert lo <= a.mean() - b.mean() <= hi
    # Resampling pairs keeps the models' correlation: narrower than resampling
    # each model's images on its own.
    rng = np.random.default_rng(0)
    n = len(a)
    unpaired = [
        a[rng.integers(0, n, n)].mean() - b[rng.integers(0, n, n)].mean() for _ in range(1000)
    ]
    assert hi - lo < 0.8 * np.subtract(*np.percentile(unpaired, [97.5, 2.5]))


def test_paired_bootstrap_of_identical_models_is_zero() -> None:
    a, _ = paired_case()
    assert paired_bootstrap_difference(a, a.copy()) == (0.0, 0.0)
    assert paired_bootstrap_difference(a.astype(int), a.astype(int), n_resamples=10) == (0.0, 0.0)


def test_paired_bootstrap_arguments() -> None:
    a, b = paired_case()
    with pytest.raises(InvalidArgument, match="same images"):
        paired_bootstrap_difference(a, b[:-1])
    with pytest.raises(InvalidArgument, match="booleans"):
        paired_bootstrap_difference(a, np.full(len(a), 0.5))
    with pytest.raises(InvalidArgument, match="n_resamples must be >= 1"):
        paired_bootstrap_difference(a, b, n_resamples=0)


# ---------------------------------------------------------------- McNemar


SMALL = [(b, c) for b in range(0, 26) for c in range(0, 26) if b + c > 0]
LARGE = [
    (0, 10**6),
    (1, 10**6 - 1),
    (499_000, 501_000),
    (499_999, 500_001),
    (500_000, 499_000),
    (123_456, 124_321),
    (10**5, 9 * 10**5),
    (2_000, 2_150),
    (60_000, 59_000),
    (7, 40),
]


def test_mcnemar_matches_scipy_on_small_counts() -> None:
    for b, c in SMALL:
        expected = binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300), (b, c)


@pytest.mark.parametrize(("b", "c"), LARGE)
def test_mcnemar_matches_scipy_on_large_counts(b: int, c: int) -> None:
    expected = binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(c, b) == mcnemar_exact(b, c)


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    # scipy refuses n = 0; no evidence either way is p = 1.
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(500_000, 500_000) == 1.0
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidArgument, match="count of images"):
            mcnemar_exact(bad, 3)
