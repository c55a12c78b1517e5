"""Per-image probabilities into ``predictions``, ``evaluations`` and the run's headline metrics.

The one writer of evaluation results: ``signdb evaluate`` scores a stored
model and calls it, and so does ``run.log_predictions`` for people's own models.
Everything is replaced in one transaction, so a re-evaluation is atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from signdb.errors import InvalidArgument
from signdb.ml.metrics import decide, evaluation_rows
from signdb.store import evaluations as eval_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store

#: How far from 1 a row of probabilities may sum (float32 softmax outputs drift a little).
SUM_TOLERANCE = 1e-4


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
) -> int:
    """Replace the run's predictions and evaluation rows for ``scored.split``; returns the rows."""
    predicted, probability = decide(scored.probabilities, classes)
    rows = evaluation_rows(scored.labels, predicted, probability, classes, thresholds)
    predictions = zip(
        scored.image_ids.tolist(),
        scored.image_splits,
        scored.labels.tolist(),
        predicted.tolist(),
        probability.tolist(),
        strict=True,
    )
    run_store.lock_run(session, run_id)
    prediction_store.delete_predictions(session, run_id, scored.split)
    eval_store.delete_evaluations(session, run_id, scored.split)
    prediction_store.copy_predictions(session, run_id, list(predictions))
    eval_store.copy_evaluations(session, run_id, scored.split, rows)
    eval_store.record_headline(session, run_id, scored.split, classes)
    return len(rows)


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
