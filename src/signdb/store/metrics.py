"""Rows of ``signdb.run_metrics``: one binary COPY per flush, assembled with numpy. No commits here."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.store.copy import COPY_HEADER, COPY_TRAILER, copy_payload, raw_connection

METRICS_COPY = "COPY signdb.run_metrics (run_id, step, name, value) FROM STDIN (FORMAT BINARY)"

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
    """COPY metric series ``{name: (steps, values)}`` into run_metrics; returns the row count."""
    copy_payload(raw_connection(session), METRICS_COPY, metrics_copy_payload(run_id, series))
    return sum(len(steps) for steps, _ in series.values())


def discard_from(session: Session, run_id: int, step: int) -> None:
    """Forget a run's metrics at ``step`` and later; a resumed run recomputes them.

    A checkpoint at ``step`` is the state after ``step`` updates, while metrics
    at ``step`` describe update number ``step`` itself, so those go too.
    """
    session.execute(
        text("DELETE FROM signdb.run_metrics WHERE run_id = :r AND step >= :s"),
        {"r": run_id, "s": step},
    )


def count_points(session: Session, run_id: int) -> int:
    return session.scalar(
        text("SELECT count(*) FROM signdb.run_metrics WHERE run_id = :r"), {"r": run_id}
    )
