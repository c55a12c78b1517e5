"""Rows of ``score_values``, ``class_score_values``, ``curves`` and ``calibration_bins``:
what an evaluated split adds to its predictions. Written with binary COPY; no commits here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.store.copy import copy_rows, raw_connection

TABLES = ("score_values", "class_score_values", "curves", "calibration_bins")  # _DELETES too

_COPIES = {
    "score_values": (
        "COPY signdb.score_values (run_id, split, metric, value, ci_low, ci_high) "
        "FROM STDIN (FORMAT BINARY)",
        ["int8", "text", "text", "float8", "float8", "float8"],
    ),
    "class_score_values": (
        "COPY signdb.class_score_values (run_id, split, label, metric, value) "
        "FROM STDIN (FORMAT BINARY)",
        ["int8", "text", "int4", "text", "float8"],
    ),
    "curves": (
        "COPY signdb.curves (run_id, split, label, positives, negatives, thresholds, tp, fp) "
        "FROM STDIN (FORMAT BINARY)",
        ["int8", "text", "int4", "int4", "int4", "float8[]", "int4[]", "int4[]"],
    ),
    "calibration_bins": (
        "COPY signdb.calibration_bins (run_id, split, bin, images, mean_confidence, accuracy) "
        "FROM STDIN (FORMAT BINARY)",
        ["int8", "text", "int2", "int4", "float8", "float8"],
    ),
}

_DELETES = {
    "score_values": text("DELETE FROM signdb.score_values WHERE run_id = :r AND split = :s"),
    "class_score_values": text(
        "DELETE FROM signdb.class_score_values WHERE run_id = :r AND split = :s"
    ),
    "curves": text("DELETE FROM signdb.curves WHERE run_id = :r AND split = :s"),
    "calibration_bins": text(
        "DELETE FROM signdb.calibration_bins WHERE run_id = :r AND split = :s"
    ),
}


def replace_scores(
    session: Session, run_id: int, split: str, rows: dict[str, Sequence[Sequence[Any]]]
) -> None:
    """Replace the split's rows of each table in ``rows`` (table -> rows without run and split)."""
    conn = raw_connection(session)
    for table in TABLES:
        session.execute(_DELETES[table], {"r": run_id, "s": split})
        statement, types = _COPIES[table]
        copy_rows(conn, statement, types, ((run_id, split, *row) for row in rows.get(table, ())))


def run_scores(session: Session, run_id: int, split: str) -> list[dict[str, Any]]:
    """``run_scores`` of one run and split, in metric order of the table."""
    rows = session.execute(
        text(
            "SELECT metric, value, ci_low, ci_high FROM signdb.run_scores "
            "WHERE run_id = :r AND split = :s"
        ),
        {"r": run_id, "s": split},
    )
    return [dict(r._mapping) for r in rows]


def class_curves(session: Session, run_id: int, split: str) -> list[dict[str, Any]]:
    """Every curve point of a run's split, by class and point."""
    rows = session.execute(
        text(
            "SELECT label, class_name, point, threshold, fpr, tpr, precision "
            "FROM signdb.class_curves WHERE run_id = :r AND split = :s ORDER BY label, point"
        ),
        {"r": run_id, "s": split},
    )
    return [dict(r._mapping) for r in rows]


def class_scores(session: Session, run_id: int, split: str) -> dict[tuple[int, str], float | None]:
    rows = session.execute(
        text(
            "SELECT label, metric, value FROM signdb.class_score_values "
            "WHERE run_id = :r AND split = :s"
        ),
        {"r": run_id, "s": split},
    )
    return {(label, metric): value for label, metric, value in rows}


def calibration(session: Session, run_id: int, split: str) -> list[dict[str, Any]]:
    rows = session.execute(
        text(
            "SELECT bin, images, mean_confidence, accuracy FROM signdb.calibration "
            "WHERE run_id = :r AND split = :s ORDER BY bin"
        ),
        {"r": run_id, "s": split},
    )
    return [dict(r._mapping) for r in rows]
