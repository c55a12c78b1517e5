"""Rows of ``signdb.predictions``: one per image of an evaluated split. No commits here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.store.copy import copy_rows, raw_connection

#: The splits ``signdb evaluate --split`` accepts; "all" evaluates every split together.
EVAL_SPLITS = ("test", "val", "train", "all")

_PREDICTIONS_COPY = (
    "COPY signdb.predictions "
    "(run_id, image_id, split, label, predicted, probability, probabilities) "
    "FROM STDIN (FORMAT BINARY)"
)
_PREDICTION_TYPES = ["int8", "int8", "text", "int4", "int4", "float8", "float4[]"]


def image_splits(split: str) -> list[str]:
    """The ``run_images`` splits an evaluation split covers."""
    return ["train", "val", "test"] if split == "all" else [split]


def delete_predictions(session: Session, run_id: int, split: str) -> None:
    session.execute(
        text("DELETE FROM signdb.predictions WHERE run_id = :r AND split = ANY(:s)"),
        {"r": run_id, "s": image_splits(split)},
    )


def copy_predictions(session: Session, run_id: int, rows: Sequence[tuple]) -> int:
    """COPY ``(image_id, split, label, predicted, probability, probabilities)`` rows for
    ``run_id``; ``probabilities`` is the whole vector in the run's classes order."""
    return copy_rows(
        raw_connection(session),
        _PREDICTIONS_COPY,
        _PREDICTION_TYPES,
        ((run_id, *row) for row in rows),
    )


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


def count_misclassified(session: Session, run_id: int, split: str) -> int:
    return session.scalar(
        text(
            "SELECT count(*) FROM signdb.predictions "
            "WHERE run_id = :r AND split = ANY(:s) AND label <> predicted"
        ),
        {"r": run_id, "s": image_splits(split)},
    )


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


def assignment_difference(session: Session, run_a: int, run_b: int, split: str) -> tuple[int, int]:
    """(images in run A's ``split`` but not in B's, the other way round), from ``run_images``."""
    row = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE b.image_id IS NULL), "
            "count(*) FILTER (WHERE a.image_id IS NULL) FROM "
            "(SELECT image_id FROM signdb.run_images WHERE run_id = :a AND split = ANY(:s)) a "
            "FULL JOIN "
            "(SELECT image_id FROM signdb.run_images WHERE run_id = :b AND split = ANY(:s)) b "
            "USING (image_id)"
        ),
        {"a": run_a, "b": run_b, "s": image_splits(split)},
    ).one()
    return int(row[0]), int(row[1])


def count_predictions(session: Session, run_id: int, split: str) -> int:
    return session.scalar(
        text("SELECT count(*) FROM signdb.predictions WHERE run_id = :r AND split = ANY(:s)"),
        {"r": run_id, "s": image_splits(split)},
    )


def paired_predictions(
    session: Session, run_a: int, run_b: int, split: str
) -> list[tuple[int, int, int, int]]:
    """(image_id, label, A's prediction, B's prediction) for the images both runs scored."""
    rows = session.execute(
        text(
            "SELECT a.image_id, a.label, a.predicted, b.predicted FROM signdb.predictions a "
            "JOIN signdb.predictions b ON b.run_id = :b AND b.image_id = a.image_id "
            "WHERE a.run_id = :a AND a.split = ANY(:s) AND b.split = a.split "
            "ORDER BY a.image_id"
        ),
        {"a": run_a, "b": run_b, "s": image_splits(split)},
    )
    return [tuple(r) for r in rows]
