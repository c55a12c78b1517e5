"""``signdb evaluate`` and ``signdb predict``: a stored model's verdict on images.

A run's model is rebuilt from its final weights (:func:`signdb.training.load_model`)
and scores the run's own split assignment (``run_images``); the result is
written by :func:`signdb.tracking.predictions.record_predictions`, the same
writer ``run.log_predictions`` uses. Binary runs get one evaluation row per
threshold, multi-class runs one one-vs-rest row per class; the rates are
generated columns of ``signdb.evaluations``, so they are read back, never
computed here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb.data.decoding import load_image_file
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.ml.base import Classifier
from signdb.ml.metrics import DEFAULT_THRESHOLDS, decide, parse_thresholds
from signdb.ml.scores import SCORE_NAMES
from signdb.results import Result, not_in_json
from signdb.store import datasets as ds_store
from signdb.store import evaluations as eval_store
from signdb.store import images as image_store
from signdb.store import scores as score_store
from signdb.store.predictions import EVAL_SPLITS, image_splits
from signdb.tracking.predictions import BOOTSTRAP, ScoredSplit, check_bootstrap, record_predictions
from signdb.training import load_model

SCORE_CHUNK = 512


@dataclass
class EvaluationResult(Result):
    """Headline metrics of one evaluated split: binary at threshold 0.5, else macro averages.

    >>> result = db.evaluate(db.runs()[-1]["run_id"])
    >>> result.split, 0 <= result.accuracy <= 1
    ('test', True)
    """

    run_id: int
    rows: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    split: str
    predictions: int
    seconds: float
    #: Every score of ``run_scores``: {metric: {"value", "ci_low", "ci_high"}}.
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    table: list[dict[str, Any]] = not_in_json(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out["seconds"] = round(self.seconds, 3)
        return out


def check_split(split: str) -> str:
    if split not in EVAL_SPLITS:
        raise InvalidArgument(f"--split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    return split


def score_split(engine: Engine, model: Classifier, run_id: int, split: str) -> ScoredSplit:
    """The model's probabilities for every image of the run's ``split``, in id order."""
    ids, splits, labels, proba = [], [], [], []
    with transaction(engine, f"reading the images of run {run_id}") as session:
        for chunk in image_store.stream_run_images(
            session, run_id, image_splits(split), model.input_shape_, chunk=SCORE_CHUNK
        ):
            ids.append(chunk.ids)
            splits.extend(chunk.splits)
            labels.append(chunk.labels)
            proba.append(model.predict_proba_pixels(chunk.pixels))
    if not ids:
        raise InvalidArgument(
            f"run {run_id} has no {split} images to evaluate; choose another --split"
        )
    return ScoredSplit(
        split, np.concatenate(ids), splits, np.concatenate(labels), np.concatenate(proba)
    )


def evaluate(
    engine: Engine,
    run_id: int,
    *,
    split: str = "test",
    thresholds: str = DEFAULT_THRESHOLDS,
    bootstrap: int = BOOTSTRAP,
) -> EvaluationResult:
    """Score ``split`` of a run and replace everything evaluated for it atomically: its
    predictions, TP/FP/TN/FN rows, scores with ``bootstrap`` resamples' intervals,
    curves and calibration."""
    check_split(split)
    sweep = parse_thresholds(thresholds)
    bootstrap = check_bootstrap(bootstrap)
    started = time.perf_counter()
    run, model = load_model(engine, run_id)
    # Scoring happens before the write transaction, so the old rows stay
    # readable (and locks stay short) while the model works.
    scored = score_split(engine, model, run_id, split)
    with transaction(engine, f"writing the evaluation of run {run_id}") as session:
        rows = record_predictions(session, run_id, run.classes, scored, sweep, bootstrap)
    with transaction(engine, f"reading the evaluation of run {run_id}") as session:
        metrics = eval_store.headline(session, run_id, split, run.classes)
        table = eval_store.evaluation_rows(session, run_id, split)
        stored = {r["metric"]: r for r in score_store.run_scores(session, run_id, split)}
    scores = {
        m: {k: stored[m][k] for k in ("value", "ci_low", "ci_high")}
        for m in SCORE_NAMES
        if m in stored
    }
    return EvaluationResult(
        run_id=run_id,
        rows=rows,
        split=split,
        predictions=len(scored.image_ids),
        seconds=time.perf_counter() - started,
        scores=scores,
        table=table,
        **metrics,
    )


def predict_files(engine: Engine, run_id: int, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Label and probability for image files, preprocessed as the run's dataset was loaded.

    ``probability`` means what ``predictions.probability`` means (positive class
    for binary runs, predicted label otherwise); ``probabilities`` has every class.
    """
    if not paths:
        raise InvalidArgument("give at least one image file, e.g. signdb predict --run 1 a.jpg")
    run, model = load_model(engine, run_id)
    with transaction(engine, "reading the dataset's preprocessing") as session:
        ds = ds_store.get_dataset(session, run.dataset)
        names = ds_store.class_names(session, ds.id)
    prep = ds.preprocessing
    # Every file is decoded before any is scored: a bad file fails the command
    # with the loader's error naming it.
    pixels = np.stack([load_image_file(p, prep) for p in paths])
    proba = model.predict_proba_pixels(pixels)
    predicted, probability = decide(proba, model.classes_)
    return [
        {
            "path": str(path),
            "label": int(label),
            "class": names.get(int(label), str(label)),
            "probability": float(p),
            "probabilities": {str(c): float(v) for c, v in zip(model.classes_, row, strict=True)},
        }
        for path, label, p, row in zip(paths, predicted, probability, proba, strict=True)
    ]
