"""Rows of ``signdb.evaluations`` (TP/FP/TN/FN per threshold or class) and the headline
metrics copied onto ``signdb.runs``. No commits here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.store.copy import copy_rows, raw_connection

_EVALUATIONS_COPY = (
    "COPY signdb.evaluations (run_id, split, positive_class, threshold, tp, fp, tn, fn) "
    "FROM STDIN (FORMAT BINARY)"
)
_EVALUATION_TYPES = ["int8", "text", "int4", "float8", "int8", "int8", "int8", "int8"]


def delete_evaluations(session: Session, run_id: int, split: str) -> None:
    session.execute(
        text("DELETE FROM signdb.evaluations WHERE run_id = :r AND split = :s"),
        {"r": run_id, "s": split},
    )


def copy_evaluations(session: Session, run_id: int, split: str, rows: Sequence[tuple]) -> int:
    """COPY ``(positive_class, threshold, tp, fp, tn, fn)`` rows; the rates are generated columns."""
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
    """Copy a test or val evaluation's headline precision/recall/F1 onto the run row
    (and, for test, the accuracy's interval from ``score_values``).

    The leaderboard ranks thousands of runs by the test ones, and sweeps select
    on the val ones; reading them from the run row keeps both a single scan.
    Called in the transaction that wrote the rows.
    """
    if split not in ("test", "val"):
        return
    metrics = headline(session, run_id, split, classes)
    statement = {
        "test": "UPDATE signdb.runs SET test_precision = :p, test_recall = :r, test_f1 = :f "
        "WHERE id = :id",
        "val": "UPDATE signdb.runs SET val_precision = :p, val_recall = :r, val_f1 = :f "
        "WHERE id = :id",
    }[split]
    session.execute(
        text(statement),
        {"p": metrics["precision"], "r": metrics["recall"], "f": metrics["f1"], "id": run_id},
    )
    if split == "test":  # the leaderboard's interval, from the scores written just before
        session.execute(
            text(
                "UPDATE signdb.runs SET "
                "test_accuracy_low = (SELECT ci_low FROM signdb.score_values "
                "WHERE run_id = :id AND split = 'test' AND metric = 'accuracy'), "
                "test_accuracy_high = (SELECT ci_high FROM signdb.score_values "
                "WHERE run_id = :id AND split = 'test' AND metric = 'accuracy') "
                "WHERE id = :id"
            ),
            {"id": run_id},
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
