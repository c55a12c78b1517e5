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

from signdb.ml.metrics import decide, evaluation_rows
from signdb.store import evaluations as eval_store
from signdb.store import predictions as prediction_store
from signdb.store import runs as run_store


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
