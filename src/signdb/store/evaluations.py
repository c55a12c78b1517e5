"""Reads and writes of ``signdb.predictions`` and ``signdb.evaluations``. No commits here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from signdb.db.engine import translate_errors
from signdb.store.copy import copy_rows, driver_errors, raw_connection

#: The splits ``signdb evaluate --split`` accepts; "all" evaluates train and test together.
EVAL_SPLITS = ("test", "train", "all")

_PREDICTIONS_COPY = (
    "COPY signdb.predictions (run_id, image_id, split, label, predicted, probability) "
    "FROM STDIN (FORMAT BINARY)"
)
_PREDICTION_TYPES = ["int8", "int8", "text", "int4", "int4", "float8"]
_EVALUATIONS_COPY = (
    "COPY signdb.evaluations (run_id, split, positive_class, threshold, tp, fp, tn, fn) "
    "FROM STDIN (FORMAT BINARY)"
)
_EVALUATION_TYPES = ["int8", "text", "int4", "float8", "int8", "int8", "int8", "int8"]

_SPLIT_IMAGES = text(
    "SELECT i.id, ri.split, i.label, i.pixels FROM signdb.run_images ri "
    "JOIN signdb.images i ON i.id = ri.image_id "
    "WHERE ri.run_id = :run AND ri.split = ANY(:splits) ORDER BY i.id"
)


def image_splits(split: str) -> list[str]:
    """The ``run_images`` splits an evaluation split covers."""
    return ["train", "test"] if split == "all" else [split]


@dataclass(frozen=True)
class ImageChunk:
    ids: np.ndarray  # int64
    splits: list[str]
    labels: np.ndarray  # int64, true labels
    pixels: np.ndarray  # uint8 (n, h, w, c)


def stream_split_images(
    engine: Engine, run_id: int, split: str, shape: tuple[int, int, int], chunk: int = 512
) -> Iterator[ImageChunk]:
    """The run's images of ``split`` in id order, ``chunk`` rows at a time (server-side cursor)."""
    with translate_errors(engine), engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(
            _SPLIT_IMAGES, {"run": run_id, "splits": image_splits(split)}
        )
        for rows in result.partitions():
            pixels = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.uint8)
            yield ImageChunk(
                ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                splits=[r[1] for r in rows],
                labels=np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows)),
                pixels=pixels.reshape(len(rows), *shape),
            )


def lock_run(session: Session, run_id: int) -> None:
    """Serialise evaluations of one run: two at once would collide on the predictions key."""
    session.execute(
        text("SELECT 1 FROM signdb.runs WHERE id = :r FOR NO KEY UPDATE"), {"r": run_id}
    )


def delete_evaluation(session: Session, run_id: int, split: str) -> None:
    """Forget the predictions and evaluation rows an evaluation of ``split`` would write."""
    session.execute(
        text("DELETE FROM signdb.predictions WHERE run_id = :r AND split = ANY(:s)"),
        {"r": run_id, "s": image_splits(split)},
    )
    session.execute(
        text("DELETE FROM signdb.evaluations WHERE run_id = :r AND split = :s"),
        {"r": run_id, "s": split},
    )


def copy_predictions(session: Session, run_id: int, rows: Sequence[tuple]) -> int:
    """COPY ``(image_id, split, label, predicted, probability)`` rows for ``run_id``."""
    with driver_errors():
        return copy_rows(
            raw_connection(session),
            _PREDICTIONS_COPY,
            _PREDICTION_TYPES,
            ((run_id, *row) for row in rows),
        )


def copy_evaluations(session: Session, run_id: int, split: str, rows: Sequence[tuple]) -> int:
    """COPY ``(positive_class, threshold, tp, fp, tn, fn)`` rows; the rates are generated columns."""
    with driver_errors():
        return copy_rows(
            raw_connection(session),
            _EVALUATIONS_COPY,
            _EVALUATION_TYPES,
            ((run_id, split, *row) for row in rows),
        )


def has_evaluation(session: Session, run_id: int, split: str = "test") -> bool:
    return bool(
        session.scalar(
            text("SELECT EXISTS (SELECT FROM signdb.evaluations WHERE run_id = :r AND split = :s)"),
            {"r": run_id, "s": split},
        )
    )


def headline(
    session: Session, run_id: int, split: str, classes: Sequence[int]
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 as stored: binary at threshold 0.5, else macro.

    Multi-class accuracy is the overall share of correct predictions (sum of the
    one-vs-rest TPs over the split size); a macro average of one-vs-rest
    accuracies would be inflated by the many true negatives of every class.
    """
    if len(classes) == 2:
        row = session.execute(
            text(
                "SELECT accuracy, precision, recall, f1 FROM signdb.evaluations "
                "WHERE run_id = :r AND split = :s AND positive_class = :pos AND threshold = 0.5"
            ),
            {"r": run_id, "s": split, "pos": classes[1]},
        ).one_or_none()
    else:
        row = session.execute(
            text(
                "SELECT sum(tp)::double precision / nullif(sum(tp + fn), 0), "
                "avg(precision), avg(recall), avg(f1) FROM signdb.evaluations "
                "WHERE run_id = :r AND split = :s AND threshold IS NULL"
            ),
            {"r": run_id, "s": split},
        ).one_or_none()
    keys = ("accuracy", "precision", "recall", "f1")
    return dict(zip(keys, row, strict=True)) if row is not None else dict.fromkeys(keys)


def record_headline(session: Session, run_id: int, split: str, classes: Sequence[int]) -> None:
    """Copy a test evaluation's headline precision/recall/F1 onto the run row.

    The leaderboard ranks thousands of runs by these; reading them from the run
    row keeps it a single scan. Called in the transaction that wrote the rows.
    """
    if split != "test":
        return
    metrics = headline(session, run_id, split, classes)
    session.execute(
        text(
            "UPDATE signdb.runs SET test_precision = :p, test_recall = :r, test_f1 = :f "
            "WHERE id = :id"
        ),
        {"p": metrics["precision"], "r": metrics["recall"], "f": metrics["f1"], "id": run_id},
    )


def evaluation_rows(session: Session, run_id: int, split: str) -> list[dict[str, Any]]:
    """Every evaluation row of a run and split, by class then threshold."""
    rows = session.execute(
        text(
            "SELECT positive_class, threshold, tp, fp, tn, fn, accuracy, precision, recall, f1 "
            "FROM signdb.evaluations WHERE run_id = :r AND split = :s "
            "ORDER BY positive_class, threshold NULLS FIRST"
        ),
        {"r": run_id, "s": split},
    )
    return [dict(r._mapping) for r in rows]


def confusion(session: Session, run_id: int, split: str) -> list[tuple[int, int, int]]:
    """(actual, predicted, count) from the ``confusion`` view."""
    rows = session.execute(
        text(
            "SELECT actual, predicted, count FROM signdb.confusion "
            "WHERE run_id = :r AND split = ANY(:s) ORDER BY actual, predicted"
        ),
        {"r": run_id, "s": image_splits(split)},
    )
    return [(a, p, int(n)) for a, p, n in rows]


def misclassified(session: Session, run_id: int, split: str, limit: int) -> list[dict[str, Any]]:
    """Misclassified images with their pixels, the most confident mistakes first."""
    rows = session.execute(
        text(
            "SELECT p.image_id, p.label, p.predicted, p.probability, i.source, i.pixels, "
            "i.height, i.width, i.channels FROM signdb.predictions p "
            "JOIN signdb.images i ON i.id = p.image_id "
            "WHERE p.run_id = :r AND p.split = ANY(:s) AND p.label <> p.predicted "
            "ORDER BY abs(p.probability - 0.5) DESC, p.image_id LIMIT :n"
        ),
        {"r": run_id, "s": image_splits(split), "n": limit},
    )
    return [dict(r._mapping) for r in rows]
