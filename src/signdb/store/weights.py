"""Tensors in ``signdb.weights`` (real[] with a shape) and metric rows in ``signdb.run_metrics``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.errors import NotFound
from signdb.store.copy import raw_connection


def save_tensors(
    session: Session,
    run_id: int,
    step: int,
    tensors: Mapping[str, np.ndarray],
    *,
    final: bool = False,
) -> None:
    """Write one checkpoint (replacing any earlier one at the same step).

    The binary COPY rows are assembled with numpy: going through Python lists
    cost 1.8 s for an MLP's 1.6 M floats, this costs a few milliseconds.
    """
    conn = raw_connection(session)
    conn.execute("DELETE FROM signdb.weights WHERE run_id = %s AND step = %s", [run_id, step])
    payload = [_COPY_HEADER]
    for name, arr in tensors.items():
        shape = list(arr.shape) or [1]
        fields = [
            _field(np.array(run_id, ">i8").tobytes()),
            _field(np.array(step, ">i4").tobytes()),
            _field(name.encode()),
            _field(_binary_array(np.asarray(shape, ">i4"), _INT4_OID)),
            _field(_binary_array(np.asarray(arr, ">f4").ravel(), _FLOAT4_OID)),
            _field(b"\x01" if final else b"\x00"),
        ]
        payload.append(len(fields).to_bytes(2, "big") + b"".join(fields))
    payload.append(_COPY_TRAILER)
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY signdb.weights (run_id, step, tensor, shape, data, final) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(b"".join(payload))


_INT4_OID = 23
_FLOAT4_OID = 700


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big", signed=True) + data


def _binary_array(values: np.ndarray, element_oid: int) -> bytes:
    """PostgreSQL's binary format of a one-dimensional array without NULLs."""
    header = np.array([1, 0, element_oid, len(values), 1], ">i4").tobytes()
    elements = np.empty(len(values), dtype=[("len", ">i4"), ("value", values.dtype)])
    elements["len"] = values.dtype.itemsize
    elements["value"] = values
    return header + elements.tobytes()


def latest_step(session: Session, run_id: int, *, final_only: bool = False) -> int | None:
    return session.scalar(
        text(
            "SELECT max(step) FROM signdb.weights WHERE run_id = :r AND (final OR NOT :final_only)"
        ),
        {"r": run_id, "final_only": final_only},
    )


def load_tensors(
    session: Session, run_id: int, step: int | None = None
) -> tuple[int, dict[str, np.ndarray]]:
    """(step, tensors) of a checkpoint; by default the latest one."""
    if step is None:
        step = latest_step(session, run_id)
        if step is None:
            raise NotFound(f"run {run_id} has no stored weights; it never reached a checkpoint")
    rows = session.execute(
        text("SELECT tensor, shape, data FROM signdb.weights WHERE run_id = :r AND step = :s"),
        {"r": run_id, "s": step},
    )
    tensors = {
        name: np.asarray(data, dtype=np.float32).reshape(shape) for name, shape, data in rows
    }
    if not tensors:
        raise NotFound(f"run {run_id} has no weights at step {step}")
    return step, tensors


METRICS_COPY = "COPY signdb.run_metrics (run_id, step, name, value) FROM STDIN (FORMAT BINARY)"


def metrics_copy_payload(run_id: int, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The binary COPY stream for metric series ``{name: (steps, values)}``.

    Assembled with numpy, one packed record array per metric name, so encoding
    costs a few nanoseconds per point instead of a Python call per value.
    """
    payload = [_COPY_HEADER]
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
    payload.append(_COPY_TRAILER)
    return b"".join(payload)


def copy_metrics(
    session: Session, run_id: int, series: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> int:
    """COPY metric series ``{name: (steps, values)}`` into run_metrics; returns the row count."""
    conn = raw_connection(session)
    with conn.cursor() as cur, cur.copy(METRICS_COPY) as copy:
        copy.write(metrics_copy_payload(run_id, series))
    return sum(len(steps) for steps, _ in series.values())


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def discard_after(session: Session, run_id: int, step: int) -> None:
    """Forget what a run recorded past its checkpoint at ``step``; resuming recomputes it.

    A checkpoint at ``step`` is the state after ``step`` updates, while metrics
    at ``step`` describe update number ``step`` itself, so those go too.
    """
    session.execute(
        text("DELETE FROM signdb.run_metrics WHERE run_id = :r AND step >= :s"),
        {"r": run_id, "s": step},
    )
    session.execute(
        text("DELETE FROM signdb.weights WHERE run_id = :r AND step > :s"), {"r": run_id, "s": step}
    )
