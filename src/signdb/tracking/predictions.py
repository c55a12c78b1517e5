"""Per-image probabilities into ``predictions``, ``evaluations``, the scores and the headlines.

The one writer of evaluation results: ``signdb evaluate`` scores a stored
model and calls it, and so does ``run.log_predictions`` for people's own models.
In one transaction it replaces a split's predictions (with each image's whole
probability vector), its TP/FP/TN/FN rows, its scores with bootstrap intervals
(``run_scores``), each class's ROC AUC and average precision
(``class_scores``), its one-vs-rest curve points (``class_curves``), its
reliability bins (``calibration``) and the run's headline columns, so a
re-evaluation is atomic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from signdb.errors import InvalidArgument
from signdb.ml.curves import class_curves, ranked_counts
from signdb.ml.metrics import decide, evaluation_rows
from signdb.ml.scores import (
    BOOTSTRAP_METRICS,
    SCORE_NAMES,
    bootstrap_intervals,
    calibration_bins,
    classification_scores,
)
from signdb.store import evaluations as eval_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store
from signdb.store import scores as score_store

#: How far from 1 a row of probabilities may sum (float32 softmax outputs drift a little).
SUM_TOLERANCE = 1e-4
#: Bootstrap resamples per evaluated split (``--bootstrap``), and their fixed seed:
#: evaluating a run twice gives the same intervals.
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class ScoredSplit:
    """What a model said about every image of one evaluation split."""

    split: str  # the evaluation split: train, test or all
    image_ids: np.ndarray
    image_splits: list[str]  # each image's own split
    labels: np.ndarray  # true labels
    probabilities: np.ndarray  # (n, k) float64, columns in classes order


def record_predictions(
    session: Session,
    run_id: int,
    classes: Sequence[int],
    scored: ScoredSplit,
    thresholds: np.ndarray,
    bootstrap: int = BOOTSTRAP,
) -> int:
    """Replace everything evaluated for ``scored.split``; returns the evaluation rows."""
    predicted, probability = decide(scored.probabilities, classes)
    rows = evaluation_rows(scored.labels, predicted, probability, classes, thresholds)
    scores = score_rows(scored, predicted, classes, bootstrap)  # before any write: it may refuse
    predictions = zip(
        scored.image_ids.tolist(),
        scored.image_splits,
        scored.labels.tolist(),
        predicted.tolist(),
        probability.tolist(),
        scored.probabilities.astype(np.float32).tolist(),
        strict=True,
    )
    run_store.lock_run(session, run_id)
    prediction_store.delete_predictions(session, run_id, scored.split)
    eval_store.delete_evaluations(session, run_id, scored.split)
    prediction_store.copy_predictions(session, run_id, list(predictions))
    eval_store.copy_evaluations(session, run_id, scored.split, rows)
    score_store.replace_scores(session, run_id, scored.split, scores)
    eval_store.record_headline(session, run_id, scored.split, classes)
    return len(rows)


def check_bootstrap(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 <= n <= 100_000:
        raise InvalidArgument(
            f"--bootstrap must be a whole number of resamples from 0 (no intervals) to "
            f"100000, got {n!r}; the default is {BOOTSTRAP}"
        )
    return int(n)


def score_rows(
    scored: ScoredSplit, predicted: np.ndarray, classes: Sequence[int], bootstrap: int
) -> dict[str, list[tuple]]:
    """The rows of each score table (see :mod:`signdb.store.scores`) for one scored split.

    Scores follow scikit-learn's definitions (:mod:`signdb.ml.scores`); the
    intervals are percentile bootstraps over images with a fixed seed. Binary
    runs get the positive class's curve, multi-class runs every class's.
    """
    labels = np.asarray(classes)
    y_true = np.searchsorted(labels, scored.labels)
    y_pred = np.searchsorted(labels, predicted)
    proba = scored.probabilities
    values = classification_scores(y_true, y_pred, proba)
    intervals = bootstrap_intervals(
        y_true, y_pred, proba, metrics=BOOTSTRAP_METRICS, n_resamples=bootstrap,
        seed=BOOTSTRAP_SEED,
    )  # fmt: skip
    score_values = [(m, values[m], *(intervals.get(m) or (None, None))) for m in SCORE_NAMES]
    class_values, curves = [], []
    for c in [1] if len(labels) == 2 else range(len(labels)):
        positive = y_true == c
        curve = class_curves(positive, proba[:, c], c)
        label = int(labels[c])
        class_values += [
            (label, "roc_auc", curve.roc_auc),
            (label, "average_precision", curve.average_precision),
            (label, "positives", float(curve.positives)),
        ]
        # Point 0 is threshold Infinity, nothing predicted positive.
        tps, fps, cuts = ranked_counts(positive, proba[:, c])
        curves.append(
            (
                label,
                curve.positives,
                curve.negatives,
                [math.inf, *cuts.tolist()],
                [0, *tps.astype(np.int64).tolist()],
                [0, *fps.astype(np.int64).tolist()],
            )
        )
    return {
        "score_values": score_values,
        "class_score_values": class_values,
        "curves": curves,
        "calibration_bins": calibration_bins(y_true, y_pred, proba),
    }


def scored_from_user(
    session: Session,
    run_id: int,
    split: str,
    image_ids: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[int],
) -> ScoredSplit:
    """A :class:`ScoredSplit` from someone's own model, checked before anything is written."""
    ids = np.asarray(image_ids)
    proba = np.asarray(probabilities, dtype=np.float64)
    k = len(classes)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise InvalidArgument(
            f"image_ids must be a 1-D sequence of integer ids, got shape {ids.shape} of {ids.dtype}"
        )
    if proba.ndim != 2 or proba.shape != (len(ids), k):
        raise InvalidArgument(
            f"probabilities must have shape (n, k) = ({len(ids)}, {k}): one row per image id and "
            f"one column per class of the run ({list(classes)}), got {proba.shape}"
        )
    if len(np.unique(ids)) != len(ids):
        raise InvalidArgument("image_ids holds an id twice; log each image once")
    bad = ~np.isfinite(proba) | (proba < 0)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidArgument(
            f"probability [{row}, {col}] (image {int(ids[row])}) is {float(proba[row, col])!r}; "
            "probabilities must be finite and >= 0"
        )
    sums = proba.sum(axis=1)
    off = np.abs(sums - 1) > SUM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise InvalidArgument(
            f"the probabilities of image {int(ids[row])} (row {row}) sum to {sums[row]:.6f}, "
            f"not 1 (within {SUM_TOLERANCE:g}); pass softmax outputs"
        )
    found = run_store.split_images(session, run_id, split, ids.tolist())
    missing = [int(i) for i in ids if int(i) not in found]
    if missing:
        raise InvalidArgument(
            f"image {missing[0]} is not in the {split} split of run {run_id} "
            f"({len(missing)} of {len(ids)} ids are not); use the ids from run.arrays({split!r})"
        )
    order = np.argsort(ids, kind="stable")
    ids, proba = ids[order], proba[order]
    return ScoredSplit(
        split,
        ids.astype(np.int64),
        [split] * len(ids),
        np.array([found[int(i)] for i in ids], dtype=np.int64),
        proba,
    )
