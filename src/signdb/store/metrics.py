"""Rows of ``signdb.run_metrics`` and their ``metric_buckets``: one binary COPY each per flush,
assembled with numpy. No commits here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.db.schema import METRIC_BUCKET_WIDTHS
from signdb.store.copy import (
    COPY_HEADER,
    COPY_TRAILER,
    copy_out_records,
    copy_payload,
    raw_connection,
)

METRICS_COPY = "COPY signdb.run_metrics (run_id, step, name, value) FROM STDIN (FORMAT BINARY)"
BUCKETS_COPY = (
    "COPY signdb.metric_buckets (run_id, name, width, bucket, points, first_step, last_step, "
    "min_value, min_step, max_value, max_step) FROM STDIN (FORMAT BINARY)"
)

Series = Mapping[str, tuple[np.ndarray, np.ndarray]]  # name -> (steps int32, values float64)


def metrics_copy_payload(run_id: int, series: Series) -> bytes:
    """The binary COPY stream for metric series ``{name: (steps, values)}``.

    Assembled with numpy, one packed record array per metric name, so encoding
    costs a few nanoseconds per point instead of a Python call per value.
    """
    payload = [COPY_HEADER]
    for name, (steps, values) in series.items():
        encoded = name.encode()
        record = np.dtype(
            [
                ("nfields", ">i2"),
                ("run_len", ">i4"), ("run", ">i8"),
                ("step_len", ">i4"), ("step", ">i4"),
                ("name_len", ">i4"), ("name", f"S{len(encoded)}"),
                ("value_len", ">i4"), ("value", ">f8"),
            ]
        )  # fmt: skip
        rows = np.empty(len(steps), dtype=record)
        rows["nfields"], rows["run_len"], rows["run"] = 4, 8, run_id
        rows["step_len"], rows["step"] = 4, steps
        rows["name_len"], rows["name"] = len(encoded), encoded
        rows["value_len"], rows["value"] = 8, values
        payload.append(rows.tobytes())
    payload.append(COPY_TRAILER)
    return b"".join(payload)


def copy_metrics(session: Session, run_id: int, series: Series) -> int:
    """COPY metric series ``{name: (steps, values)}`` into run_metrics, and their bucket
    summaries into metric_buckets; returns the number of points."""
    conn = raw_connection(session)
    copy_payload(conn, METRICS_COPY, metrics_copy_payload(run_id, series))
    copy_payload(conn, BUCKETS_COPY, buckets_copy_payload(run_id, series))
    return sum(len(steps) for steps, _ in series.values())


def bucket_summaries(steps: np.ndarray, values: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """Per bucket of ``width`` steps: its number, point count, first and last step, and the
    minimum and maximum with the step where each occurs (the first such step).

    >>> s = bucket_summaries(np.array([0, 1, 2, 64]), np.array([3.0, 1.0, 5.0, 2.0]), 64)
    >>> s["bucket"].tolist(), s["points"].tolist(), s["min_step"].tolist(), s["max_step"].tolist()
    ([0, 1], [3, 1], [1, 64], [2, 64])
    """
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    buckets = steps // width
    if len(buckets) > 1 and np.any(buckets[1:] < buckets[:-1]):  # rare: a loop logs in order
        order = np.argsort(buckets, kind="stable")
        buckets, steps, values = buckets[order], steps[order], values[order]
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    counts = np.diff(np.r_[starts, len(buckets)])
    segment = np.repeat(np.arange(len(starts)), counts)
    lows = np.minimum.reduceat(values, starts)
    highs = np.maximum.reduceat(values, starts)
    return {
        "bucket": buckets[starts],
        "points": counts,
        "first_step": np.minimum.reduceat(steps, starts),
        "last_step": np.maximum.reduceat(steps, starts),
        "min_value": lows,
        "min_step": steps[_first_where(values == lows[segment], segment)],
        "max_value": highs,
        "max_step": steps[_first_where(values == highs[segment], segment)],
    }


def _first_where(hit: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """The first index of each segment where ``hit`` holds (every segment has one)."""
    where = np.flatnonzero(hit)
    return where[np.r_[True, segment[where][1:] != segment[where][:-1]]]


def buckets_copy_payload(run_id: int, series: Series) -> bytes:
    """The binary COPY stream of every width's bucket summaries of ``series``."""
    payload = [COPY_HEADER]
    for name, (steps, values) in series.items():
        if not len(steps):
            continue
        encoded = name.encode()
        for width in METRIC_BUCKET_WIDTHS:
            summary = bucket_summaries(steps, values, width)
            record = np.dtype(
                [("nfields", ">i2"), ("run_len", ">i4"), ("run", ">i8"),
                 ("name_len", ">i4"), ("name", f"S{len(encoded)}")]
                + [item for column, kind in _BUCKET_FIELDS
                   for item in ((f"{column}_len", ">i4"), (column, kind))]
            )  # fmt: skip
            rows = np.empty(len(summary["bucket"]), dtype=record)
            rows["nfields"], rows["run_len"], rows["run"] = 11, 8, run_id
            rows["name_len"], rows["name"] = len(encoded), encoded
            rows["width_len"], rows["width"] = 4, width
            for column, kind in _BUCKET_FIELDS[1:]:
                rows[f"{column}_len"], rows[column] = int(kind[-1]), summary[column]
            payload.append(rows.tobytes())
    payload.append(COPY_TRAILER)
    return b"".join(payload)


_BUCKET_FIELDS = (
    ("width", ">i4"),
    ("bucket", ">i4"),
    ("points", ">i4"),
    ("first_step", ">i4"),
    ("last_step", ">i4"),
    ("min_value", ">f8"),
    ("min_step", ">i4"),
    ("max_value", ">f8"),
    ("max_step", ">i4"),
)


def discard_from(session: Session, run_id: int, step: int) -> None:
    """Forget a run's metrics at ``step`` and later; a resumed run recomputes them.

    A checkpoint at ``step`` is the state after ``step`` updates, while metrics
    at ``step`` describe update number ``step`` itself, so those go too.
    """
    session.execute(
        text("DELETE FROM signdb.run_metrics WHERE run_id = :r AND step >= :s"),
        {"r": run_id, "s": step},
    )
    # The buckets that held discarded points are summarised again from what is left.
    for width in METRIC_BUCKET_WIDTHS:
        params = {"r": run_id, "s": step, "w": width}
        session.execute(
            text(
                "DELETE FROM signdb.metric_buckets "
                "WHERE run_id = :r AND width = :w AND bucket >= :s / :w"
            ),
            params,
        )
        session.execute(_RESUMMARISE, params)


_RESUMMARISE = text("""
    INSERT INTO signdb.metric_buckets
        (run_id, name, width, bucket, points, first_step, last_step,
         min_value, min_step, max_value, max_step)
    SELECT run_id, name, :w, step / :w, count(*), min(step), max(step),
           min(value), (array_agg(step ORDER BY value, step))[1],
           max(value), (array_agg(step ORDER BY value DESC, step))[1]
    FROM signdb.run_metrics
    WHERE run_id = :r AND step >= :s / :w * :w AND step < :s
    GROUP BY run_id, name, step / :w""")


def count_points(session: Session, run_id: int) -> int:
    return session.scalar(
        text("SELECT count(*) FROM signdb.run_metrics WHERE run_id = :r"), {"r": run_id}
    )


def metric_points(session: Session, run_id: int) -> dict[str, int]:
    """``{metric name: points}`` of a run, read from its buckets (not its points)."""
    rows = session.execute(
        text(
            "SELECT name, sum(points) FROM signdb.metric_buckets "
            "WHERE run_id = :r AND width = :w GROUP BY name ORDER BY name"
        ),
        {"r": run_id, "w": METRIC_BUCKET_WIDTHS[-1]},
    )
    return {name: int(points) for name, points in rows}


def series(session: Session, run_id: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Every point of one metric of a run: (steps int64, values float64), by step."""
    query = sql.SQL(
        "SELECT step, value FROM signdb.run_metrics WHERE run_id = {} AND name = {} ORDER BY step"
    ).format(sql.Literal(int(run_id)), sql.Literal(name))
    conn = raw_connection(session)
    rows = copy_out_records(conn, query.as_string(conn), (">i4", ">f8"))
    return rows["f0"].astype(np.int64), rows["f1"].astype(np.float64)


def bucket_rows(session: Session, run_id: int, name: str, width: int) -> dict[str, np.ndarray]:
    """A metric's bucket rows at ``width`` (partial rows included), by bucket."""
    query = sql.SQL(
        "SELECT first_step, last_step, min_value, min_step, max_value, max_step, points "
        "FROM signdb.metric_buckets WHERE run_id = {} AND name = {} AND width = {} "
        "ORDER BY bucket"
    ).format(sql.Literal(int(run_id)), sql.Literal(name), sql.Literal(int(width)))
    conn = raw_connection(session)
    rows = copy_out_records(
        conn, query.as_string(conn), (">i4", ">i4", ">f8", ">i4", ">f8", ">i4", ">i4")
    )
    columns = ("first_step", "last_step", "min_value", "min_step", "max_value", "max_step")
    out = {c: rows[f"f{i}"].astype(np.float64 if "value" in c else np.int64)
           for i, c in enumerate(columns)}  # fmt: skip
    out["points"] = rows["f6"].astype(np.int64)
    return out


def points_since(
    session: Session, run_id: int, since: Any, limit: int
) -> list[tuple[str, int, float, Any]]:
    """(name, step, value, recorded_at) of the points recorded after ``since`` (None: all),
    oldest first, at most ``limit`` of them."""
    rows = session.execute(
        text(
            "SELECT name, step, value, recorded_at FROM signdb.run_metrics "
            "WHERE run_id = :r AND (CAST(:since AS timestamptz) IS NULL OR recorded_at > :since) "
            "ORDER BY recorded_at, name, step LIMIT :limit"
        ),
        {"r": run_id, "since": since, "limit": limit},
    )
    return [tuple(row) for row in rows]


def csv_lines(session: Session, run_id: int, name: str) -> Iterator[bytes]:
    """One metric's points as CSV (``step,value``, with a header), streamed by COPY."""
    query = sql.SQL(
        "COPY (SELECT step, value FROM signdb.run_metrics WHERE run_id = {} AND name = {} "
        "ORDER BY step) TO STDOUT (FORMAT CSV, HEADER)"
    ).format(sql.Literal(int(run_id)), sql.Literal(name))
    conn = raw_connection(session)
    with conn.cursor() as cur, cur.copy(query) as copy:
        for block in copy:
            yield bytes(block)
