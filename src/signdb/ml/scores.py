"""The scores of a classification run, with scikit-learn's definitions, in plain numpy.

Conventions
-----------
``y_true`` and ``y_pred`` are int arrays of class *indices* ``0..k-1``;
``proba`` is ``(n, k)`` float64, rows summing to 1, columns in class order,
and ``k = proba.shape[1]``. Every average runs over all ``k`` classes, present
or not (scikit-learn's ``labels=range(k)``). For ``k == 2`` the positive class
is index 1 and the ranking scores and Brier use ``proba[:, 1]``. ``y_pred`` is
always the caller's: signdb predicts positive when ``proba[:, 1] >= 0.5``,
which is not the argmax on a tie, so nothing here recomputes it.

Each score equals scikit-learn 1.9's on the same inputs (the tests check it to
1e-9). ``log_loss`` clips ``proba`` to ``[eps, 1 - eps]`` without renormalising,
as scikit-learn does. ``brier`` follows ``brier_score_loss``: the mean over
images of ``sum_c (proba[i, c] - [y_true[i] == c])**2``, halved when ``k == 2``
(so binary Brier is the mean of ``(proba[:, 1] - y)**2``, in [0, 1]) and not
halved when ``k >= 3`` (range [0, 2]). ``ece`` has 15 equal-width bins of the
confidence ``proba[i, y_pred[i]]``, ``[b/15, (b+1)/15)`` with the last closed.

Undefined scores are ``None``
-----------------------------
A score is ``None`` exactly where scikit-learn warns that it is undefined or
returns NaN; everywhere else it is scikit-learn's value, even where it settles
a 0/0 silently. (Its "A single label was found in 'y_true' and 'y_pred'" is a
remark on a confusion matrix's shape, not on the score, and does not count.)

* accuracy, micro_*, log_loss, brier, ece: never None (micro P = R = F1 = accuracy).
* balanced_accuracy: None when a class absent from y_true is predicted; otherwise the
  mean recall of the classes present in y_true (absent, unpredicted classes are skipped).
* macro_precision, weighted_precision: None when some class is never predicted.
* macro_recall, weighted_recall: None when some class is absent from y_true.
* macro_f1, weighted_f1: None when some class is neither in y_true nor predicted.
* mcc: never None; 0.0 when y_true or y_pred holds one class only (scikit-learn's choice).
* cohen_kappa: None when y_true and y_pred are all one same class (chance agreement 1).
* roc_auc: None when the positive class (k == 2), or any class (k > 2), has no
  positive or no negative image.
* average_precision: None when the positive class (k == 2), or any class, has no positive.

Examples
--------
>>> import numpy as np
>>> y_true = np.array([0, 0, 1, 1])
>>> proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
>>> y_pred = (proba[:, 1] >= 0.5).astype(int)
>>> s = classification_scores(y_true, y_pred, proba)
>>> s["accuracy"], s["macro_recall"], s["roc_auc"], round(s["brier"], 6)
(0.75, 0.75, 0.75, 0.158125)
>>> calibration_bins(y_true, y_pred, proba)  # (bin, images, mean confidence, accuracy)
[(9, 2, 0.625, 0.5), (12, 1, 0.8, 1.0), (13, 1, 0.9, 1.0)]
>>> round(mcnemar_exact(1, 9), 12)  # 2 * P(X <= 1) for X ~ Binomial(10, 1/2): 22 / 1024
0.021484375
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.curves import check_inputs, class_curves

SCORE_NAMES = (
    *("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1"),
    *("micro_precision", "micro_recall", "micro_f1"),
    *("weighted_precision", "weighted_recall", "weighted_f1", "mcc", "cohen_kappa"),
    *("log_loss", "brier", "roc_auc", "average_precision", "ece"),
)
#: Scores the bootstrap resamples: all but the two ranking scores, which would
#: need a sort per resample.
BOOTSTRAP_METRICS = tuple(m for m in SCORE_NAMES if m not in ("roc_auc", "average_precision"))
ECE_BINS = 15
#: An interval needs the score defined in at least this share of the resamples.
MIN_DEFINED_FRACTION = 0.5
#: Resampled indices held at once (32 MB of int64), however many images there are.
_CHUNK_ELEMENTS = 1 << 22
_EPS = float(np.finfo(np.float64).eps)


def _confusions(codes: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """``(r, k, k)`` confusion counts of ``r`` index rows, from one bincount.

    ``codes`` is ``y_true * k + y_pred``; offsetting row ``j`` by ``j k^2``
    gives each row its own block of bins.
    """
    r = idx.shape[0]
    flat = (codes[idx] + (k * k) * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * k * k).reshape(r, k, k)


def _count_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Every confusion-matrix score of a stack ``(r, k, k)`` of matrices; NaN is undefined."""
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    actual = cm.sum(axis=2)  # rows are true classes
    predicted = cm.sum(axis=1)
    n = actual.sum(axis=1)
    correct = tp.sum(axis=1)
    accuracy = correct / n
    out = dict.fromkeys(("accuracy", "micro_precision", "micro_recall", "micro_f1"), accuracy)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = {
            "precision": tp / predicted,
            "recall": tp / actual,
            # 2 tp / (2 tp + fp + fn): defined when either count is non-zero, so
            # a class predicted but absent scores 0, as in scikit-learn.
            "f1": 2 * tp / (actual + predicted),
        }
        for name, values in per_class.items():
            # NaN propagates through both averages: one undefined class makes the
            # average undefined, even with weight 0 (scikit-learn warns there too).
            out[f"macro_{name}"] = values.mean(axis=1)
            out[f"weighted_{name}"] = (values * actual).sum(axis=1) / n
        present = actual > 0
        recall = np.where(present, per_class["recall"], 0.0)
        balanced = recall.sum(axis=1) / present.sum(axis=1)
    out["balanced_accuracy"] = np.where((~present & (predicted > 0)).any(axis=1), np.nan, balanced)
    dot = (actual * predicted).sum(axis=1)
    var = (n**2 - (predicted**2).sum(axis=1)) * (n**2 - (actual**2).sum(axis=1))
    out["mcc"] = np.where(var == 0, 0.0, (correct * n - dot) / np.sqrt(np.where(var == 0, 1, var)))
    # kappa = 1 - observed / chance disagreement; n^2 - dot is n times the chance
    # disagreement, exactly 0 only when both sides are one same class.
    chance = n**2 - dot
    safe = np.where(chance == 0, 1.0, chance)
    out["cohen_kappa"] = np.where(chance == 0, np.nan, 1 - n * (n - correct) / safe)
    return out


def _per_image(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image terms of the means: log loss, Brier, confidence, correctness, ECE bin."""
    n, k = proba.shape
    rows = np.arange(n)
    if k == 2:
        brier = (proba[:, 1] - (y_true == 1)) ** 2
    else:
        brier = np.sum((proba - (y_true[:, None] == np.arange(k))) ** 2, axis=1)
    confidence = proba[rows, y_pred]
    return {
        "log_loss": -np.log(np.clip(proba[rows, y_true], _EPS, 1 - _EPS)),
        "brier": brier,
        "confidence": confidence,
        "correct": (y_true == y_pred).astype(np.float64),
        "bin": _bin_index(confidence, ECE_BINS),
    }


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin ``b`` holds ``b / n_bins <= c < (b + 1) / n_bins``; the last one holds 1 too."""
    # Edges are computed as b / n_bins, the same doubles a plain loop compares with.
    edges = np.arange(1, n_bins) / n_bins
    return np.searchsorted(edges, confidence, side="right")


def _bin_sums(per_image: dict, idx: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """``(images, sum of confidence, correct images)`` per bin, each ``(r, n_bins)``."""
    r = idx.shape[0]
    flat = (per_image["bin"][idx] + n_bins * np.arange(r)[:, None]).ravel()

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights, minlength=r * n_bins).reshape(r, n_bins)

    conf = per_image["confidence"][idx].ravel()
    return total(None), total(conf), total(per_image["correct"][idx].ravel())


def _image_scores(per_image: dict, idx: np.ndarray, wanted: Iterable[str]) -> dict:
    """The per-image means (log loss, Brier, ECE) of each index row in ``wanted``."""
    out = {}
    for name in set(wanted) & {"log_loss", "brier"}:
        out[name] = per_image[name][idx].mean(axis=1)
    if "ece" in wanted:
        # sum_b (n_b / n) |acc_b - conf_b| = sum_b |correct_b - confidence_b| / n, and each
        # bin's correct_b - confidence_b is one weighted count: one bincount, not two.
        r = idx.shape[0]
        flat = (per_image["bin"][idx] + ECE_BINS * np.arange(r)[:, None]).ravel()
        gap = (per_image["correct"] - per_image["confidence"])[idx].ravel()
        per_bin = np.bincount(flat, gap, minlength=r * ECE_BINS).reshape(r, ECE_BINS)
        out["ece"] = np.abs(per_bin).sum(axis=1) / idx.shape[1]
    return out


def classification_scores(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray
) -> dict[str, float | None]:
    """All of :data:`SCORE_NAMES` for one run; ``None`` marks an undefined score."""
    y_true, proba, y_pred = check_inputs(y_true, proba, y_pred)
    n, k = proba.shape
    every = np.arange(n)[None, :]
    values: dict[str, float | None] = {
        name: float(v[0])
        for name, v in _count_scores(_confusions(y_true * k + y_pred, every, k)).items()
    }
    per_image = _per_image(y_true, y_pred, proba)
    values.update({m: float(v[0]) for m, v in _image_scores(per_image, every, SCORE_NAMES).items()})
    classes = [1] if k == 2 else range(k)
    curves = [class_curves(y_true == c, proba[:, c], c) for c in classes]
    for name in ("roc_auc", "average_precision"):
        areas = [getattr(c, name) for c in curves]
        values[name] = None if None in areas else float(np.mean(areas))
    return {
        m: None if values[m] is None or math.isnan(values[m]) else values[m] for m in SCORE_NAMES
    }


def calibration_bins(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS
) -> list[tuple[int, int, float, float]]:
    """``(bin, images, mean confidence, accuracy)`` of each non-empty confidence bin.

    The bins are the ECE's: ``[b/n_bins, (b+1)/n_bins)``, the last closed at 1,
    so ``sum(images / n * |accuracy - confidence|)`` over the rows is ``ece``.
    """
    y_true, proba, y_pred = check_inputs(y_true, proba, y_pred)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise InvalidArgument(f"n_bins must be an integer >= 1, got {n_bins!r}")
    per_image = _per_image(y_true, y_pred, proba)
    per_image["bin"] = _bin_index(per_image["confidence"], int(n_bins))
    counts, conf, correct = (
        a[0] for a in _bin_sums(per_image, np.arange(len(y_true))[None], n_bins)
    )
    return [
        (int(b), int(counts[b]), float(conf[b] / counts[b]), float(correct[b] / counts[b]))
        for b in np.flatnonzero(counts)
    ]


def _check_resampling(n_resamples: int, confidence: float, minimum: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise InvalidArgument(f"n_resamples must be an integer, got {n_resamples!r}")
    if n_resamples < minimum:
        raise InvalidArgument(f"n_resamples must be >= {minimum}, got {n_resamples}")
    if not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise InvalidArgument(
            f"confidence must be a number in (0, 1), e.g. 0.95, got {confidence!r}"
        )


def _resample_chunks(rng: np.random.Generator, n: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Index rows ``(r, n)`` drawn with replacement, ``n_resamples`` rows in all.

    Chunks bound the memory for large ``n``; up to 4096 images, 1000 resamples
    are a single draw.
    """
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, per_chunk):
        yield rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.percentile(values, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def _interval(
    values: np.ndarray, confidence: float, n_resamples: int
) -> tuple[float, float] | None:
    """Percentile interval of the defined (non-NaN) values, or None if too few are defined."""
    defined = values[~np.isnan(values)]
    if len(defined) == 0 or len(defined) < MIN_DEFINED_FRACTION * n_resamples:
        return None
    return _percentiles(defined, confidence)


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    *,
    metrics: Sequence[str] = ("accuracy", "macro_f1"),
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap interval of each of ``metrics``, resampling images.

    Each resample draws ``n`` images with replacement (``default_rng(seed)``, so
    one seed gives one answer). A resample where a score is undefined (a class
    missing from it, say) is dropped; the interval is ``None`` when fewer than
    :data:`MIN_DEFINED_FRACTION` of the resamples remain. Any of
    :data:`BOOTSTRAP_METRICS`; ``n_resamples=0`` returns ``{}``.
    """
    y_true, proba, y_pred = check_inputs(y_true, proba, y_pred)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise InvalidArgument(
            f"cannot bootstrap {names}; choose from {', '.join(BOOTSTRAP_METRICS)}"
        )
    _check_resampling(n_resamples, confidence, minimum=0)
    if n_resamples == 0:
        return {}
    n, k = proba.shape
    codes = y_true * k + y_pred
    per_image = _per_image(y_true, y_pred, proba)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for idx in _resample_chunks(rng, n, n_resamples):
        values = _image_scores(per_image, idx, metrics)
        if set(metrics) - set(values):
            values.update(_count_scores(_confusions(codes, idx, k)))
        for m in metrics:
            parts[m].append(values[m])
    return {m: _interval(np.concatenate(parts[m]), confidence, n_resamples) for m in metrics}


def _check_correct(name: str, values: object) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or len(values) == 0:
        raise InvalidArgument(f"{name} must be a non-empty 1-D array, got shape {values.shape}")
    if values.dtype != bool and not np.isin(values, (0, 1)).all():
        raise InvalidArgument(f"{name} must hold booleans (or 0/1): was each image right?")
    return values.astype(np.float64)


def paired_bootstrap_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of accuracy(a) - accuracy(b), resampling images jointly.

    ``correct_a[i]`` and ``correct_b[i]`` say whether each model got image ``i``
    right; resampling the pairs keeps the correlation between the two models,
    which makes the interval much narrower than two separate intervals.
    """
    a, b = _check_correct("correct_a", correct_a), _check_correct("correct_b", correct_b)
    if a.shape != b.shape:
        raise InvalidArgument(
            f"correct_a has {len(a)} images but correct_b has {len(b)}; pass both models' "
            "results on the same images, in the same order"
        )
    _check_resampling(n_resamples, confidence, minimum=1)
    diff = a - b
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [diff[idx].mean(axis=1) for idx in _resample_chunks(rng, len(diff), n_resamples)]
    )
    return _percentiles(values, confidence)  # a difference of means is never undefined


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: Stirling's series for lgamma: B_2j / (2j (2j - 1)), j = 1..6.
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360)


def _stirling_error(x: float) -> float:
    """``lgamma(x) - ((x - 1/2) log x - x + log(2 pi) / 2)`` for ``x >= 1``."""
    if x < 10:  # small x: lgamma itself is accurate and nothing large cancels
        return math.lgamma(x) - (x - 0.5) * math.log(x) + x - _HALF_LOG_2PI
    inv2, total = 1.0 / (x * x), 0.0
    for coefficient in reversed(_STIRLING):
        total = total * inv2 + coefficient
    return total / x  # the next term, 1 / (156 x^13), is below 1e-15 from x = 10


def _log_half_binomial_pmf(m: int, n: int) -> float:
    """``log(C(n, m) / 2**n)``, to ~1e-13 relative even for n ~ 10**6.

    ``lgamma(n + 1) - lgamma(m + 1) - ...`` would cancel terms of size ~1e7 and
    lose 1e-9; Stirling's form cancels them by hand, leaving ``log1p`` terms.
    """
    if m in (0, n):
        return -n * math.log(2)
    u, v = m, n - m
    t = (u - v) / n  # 2u / n = 1 + t and 2v / n = 1 - t
    return (
        -u * math.log1p(t)
        - v * math.log1p(-t)
        + 0.5 * math.log(n / (2 * math.pi * u * v))
        + _stirling_error(n)
        - _stirling_error(u)
        - _stirling_error(v)
    )


def _count_argument(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InvalidArgument(f"{name} must be a count of images (an integer >= 0), got {value!r}")
    return int(value)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of ``b`` vs ``c`` discordant pairs.

    ``b`` counts images only model A got right, ``c`` those only B got right.
    Under "the models are equally good" ``b ~ Binomial(b + c, 1/2)``; the
    p-value is ``min(1, 2 P(X <= min(b, c)))``, scipy's ``binomtest(b, b + c).pvalue``
    (the distribution is symmetric). 0/0 gives 1.
    """
    b, c = _count_argument("b", b), _count_argument("c", c)
    n, m = b + c, min(b, c)
    if 2 * m == n:  # b == c: the most likely split of all
        return 1.0
    # P(X <= m) = pmf(m) * sum_i pmf(m - i) / pmf(m); the ratios multiply up from
    # pmf(j - 1) / pmf(j) = j / (n - j + 1), all < 1, so the sum is stable.
    j = np.arange(m, 0, -1, dtype=np.float64)
    ratios = np.cumprod(j / (n - j + 1))
    log_p = math.log(2) + _log_half_binomial_pmf(m, n) + math.log1p(float(ratios.sum()))
    return min(1.0, math.exp(log_p))
