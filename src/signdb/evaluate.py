"""Predictions to counts to evaluation rows: ``signdb evaluate`` and ``signdb predict``.

A run's model is rebuilt from its final weights (:func:`signdb.training.load_model`)
and scores the run's own split assignment (``run_images``). Binary runs get one
evaluation row per threshold, where an image is predicted positive (the second
of ``classes``) when its probability is ``>= threshold``; multi-class runs get a
one-vs-rest row per class at the argmax decision (threshold NULL). The counts
are computed in numpy for every threshold at once; the rates are generated
columns of ``signdb.evaluations``, so they are read back, never computed here.

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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb.data.readers import load_image_file
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.ml.base import Classifier
from signdb.ml.losses import STANDARDIZE_EPS
from signdb.store import datasets as ds_store
from signdb.store import evaluations as eval_store
from signdb.training import load_model, to_float

DEFAULT_THRESHOLDS = "0:1:0.01"
#: Thresholds are rounded so that 0.1 * 3 is stored as 0.3 and 0.5 is exactly 0.5.
_THRESHOLD_DECIMALS = 10


# -- thresholds ------------------------------------------------------------------------
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


# -- counts (pure numpy) ----------------------------------------------------------------
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


def one_vs_rest_counts(
    labels: np.ndarray, predicted: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, TN, FN per class (in ``classes`` order) from one confusion matrix."""
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    actual = np.fromiter((index[int(v)] for v in labels), dtype=np.int64, count=len(labels))
    guess = np.fromiter((index[int(v)] for v in predicted), dtype=np.int64, count=len(predicted))
    matrix = np.bincount(actual * k + guess, minlength=k * k).reshape(k, k)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    return tp, fp, len(labels) - tp - fp - fn, fn


# -- scoring -----------------------------------------------------------------------------
def probabilities(model: Classifier, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (n, k) in float64 for uint8 ``pixels`` (n, h, w, c).

    The linear models are scored here in double precision from their float32
    weights, exactly as ``signdb.predict_proba`` does in SQL: the float32
    forward pass the trainer uses drifts by ~1e-6 over a 4096-term dot
    product, which would break the promise that the stored probability and
    the SQL one agree to 1e-6. Other models use their own forward pass.
    """
    if model.name not in ("logreg", "softmax"):
        return model.predict_proba(to_float(pixels)).astype(np.float64)
    if tuple(pixels.shape[1:]) != model.input_shape_:
        raise InvalidArgument(
            f"input shape {tuple(pixels.shape[1:])} does not match the model's "
            f"{model.input_shape_}; preprocess images to the training size"
        )
    x = pixels.reshape(len(pixels), -1).astype(np.float64) / 255.0
    weight = model.params_["weight"].astype(np.float64)
    bias = model.params_["bias"].astype(np.float64)
    if model.name == "logreg":
        z = x @ weight + bias[0]
        e = np.exp(-np.abs(z))  # the stable sigmoid: exp never sees a positive argument
        p = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return np.stack([1.0 - p, p], axis=1)
    if model.get_params().get("standardize", True):
        x = x - x.mean(axis=1, keepdims=True)
        x = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + STANDARDIZE_EPS)
    z = x @ weight + bias
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def score(model: Classifier, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, probability) as ``predictions`` stores them.

    Binary: the positive-class probability, positive when it is >= 0.5 (the
    rule of the 0.5 evaluation row, so ``confusion`` and it agree).
    Multi-class: the argmax label and its probability.
    """
    proba = probabilities(model, pixels)
    classes = model.classes_
    if len(classes) == 2:
        p = proba[:, 1]
        return np.where(p >= 0.5, classes[1], classes[0]), p
    best = np.argmax(proba, axis=1)
    return classes[best], proba[np.arange(len(proba)), best]


@dataclass
class Scores:
    image_ids: np.ndarray
    splits: list[str]
    labels: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray


def score_split(engine: Engine, model: Classifier, run_id: int, split: str) -> Scores:
    shape = model.input_shape_
    ids, splits, labels, predicted, probability = [], [], [], [], []
    for chunk in eval_store.stream_split_images(engine, run_id, split, shape):
        guess, p = score(model, chunk.pixels)
        ids.append(chunk.ids)
        splits.extend(chunk.splits)
        labels.append(chunk.labels)
        predicted.append(guess)
        probability.append(p)
    if not ids:
        raise InvalidArgument(
            f"run {run_id} has no {split} images to evaluate; choose another --split"
        )
    return Scores(
        np.concatenate(ids),
        splits,
        np.concatenate(labels),
        np.concatenate(predicted),
        np.concatenate(probability),
    )


# -- evaluate ----------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    run_id: int
    split: str
    rows: int
    predictions: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    seconds: float
    table: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "rows": self.rows,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "split": self.split,
            "predictions": self.predictions,
            "seconds": round(self.seconds, 3),
        }


def evaluation_rows(
    scores: Scores, classes: Sequence[int], thresholds: np.ndarray
) -> list[tuple[int, float | None, int, int, int, int]]:
    """``(positive_class, threshold, tp, fp, tn, fn)`` rows for ``signdb.evaluations``."""
    if len(classes) == 2:
        tp, fp, tn, fn = binary_counts(scores.labels == classes[1], scores.probability, thresholds)
        return [
            (int(classes[1]), float(t), int(a), int(b), int(c), int(d))
            for t, a, b, c, d in zip(thresholds, tp, fp, tn, fn, strict=True)
        ]
    tp, fp, tn, fn = one_vs_rest_counts(scores.labels, scores.predicted, classes)
    return [
        (int(c), None, int(a), int(b), int(x), int(d))
        for c, a, b, x, d in zip(classes, tp, fp, tn, fn, strict=True)
    ]


def evaluate(
    engine: Engine, run_id: int, *, split: str = "test", thresholds: str = DEFAULT_THRESHOLDS
) -> EvaluationResult:
    """Score ``split`` of a run and replace its predictions and evaluation rows atomically."""
    if split not in eval_store.EVAL_SPLITS:
        raise InvalidArgument(
            f"--split must be one of {', '.join(eval_store.EVAL_SPLITS)}, got {split!r}"
        )
    sweep = parse_thresholds(thresholds)
    started = time.perf_counter()
    run, model = load_model(engine, run_id)
    # Scoring happens before the write transaction, so the old rows stay
    # readable (and locks stay short) while the model works.
    scores = score_split(engine, model, run_id, split)
    rows = evaluation_rows(scores, run.classes, sweep)
    predictions = list(
        zip(
            scores.image_ids.tolist(),
            scores.splits,
            scores.labels.tolist(),
            scores.predicted.tolist(),
            scores.probability.tolist(),
            strict=True,
        )
    )
    with transaction(engine) as session:
        eval_store.lock_run(session, run_id)
        eval_store.delete_evaluation(session, run_id, split)
        eval_store.copy_predictions(session, run_id, predictions)
        eval_store.copy_evaluations(session, run_id, split, rows)
        eval_store.record_headline(session, run_id, split, run.classes)
    with transaction(engine) as session:
        metrics = eval_store.headline(session, run_id, split, run.classes)
        table = eval_store.evaluation_rows(session, run_id, split)
    return EvaluationResult(
        run_id=run_id,
        split=split,
        rows=len(rows),
        predictions=len(predictions),
        seconds=time.perf_counter() - started,
        table=table,
        **metrics,
    )


# -- predict -----------------------------------------------------------------------------
def predict_files(engine: Engine, run_id: int, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Label and probability for image files, preprocessed as the run's dataset was loaded.

    ``probability`` means what ``predictions.probability`` means (positive class
    for binary runs, predicted label otherwise); ``probabilities`` has every class.
    """
    if not paths:
        raise InvalidArgument("give at least one image file, e.g. signdb predict --run 1 a.jpg")
    run, model = load_model(engine, run_id)
    with transaction(engine) as session:
        prep = ds_store.get_dataset(session, run.dataset).preprocessing
    # Every file is decoded before any is scored: a bad file fails the command
    # with the loader's error naming it.
    pixels = np.stack([load_image_file(p, prep) for p in paths])
    predicted, probability = score(model, pixels)
    proba = probabilities(model, pixels)
    return [
        {
            "path": str(path),
            "label": int(label),
            "probability": float(p),
            "probabilities": {str(c): float(v) for c, v in zip(model.classes_, row, strict=True)},
        }
        for path, label, p, row in zip(paths, predicted, probability, proba, strict=True)
    ]
