"""Tensors in ``signdb.weights``: ``real[]`` with a shape, one row per tensor and step. No commits here."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from signdb.errors import NotFound
from signdb.store.copy import (
    COPY_HEADER,
    COPY_TRAILER,
    FLOAT4_OID,
    INT4_OID,
    binary_array,
    copy_payload,
    field,
    raw_connection,
)

WEIGHTS_COPY = (
    "COPY signdb.weights (run_id, step, tensor, shape, data, final, dtype, raw) "
    "FROM STDIN (FORMAT BINARY)"
)
#: A NULL field in a binary COPY row.
_NULL = (-1).to_bytes(4, "big", signed=True)


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
    cost 1.8 s for an MLP's 1.6 M floats, this costs a few milliseconds. A
    tensor that is not float32 keeps its exact bytes in ``raw`` beside the
    float32 view in ``data``.
    """
    conn = raw_connection(session)
    conn.execute("DELETE FROM signdb.weights WHERE run_id = %s AND step = %s", [run_id, step])
    payload = [COPY_HEADER]
    for name, value in tensors.items():
        arr = np.asarray(value)
        shape = list(arr.shape)  # [] for a 0-d tensor: shapes come back exactly
        exact = arr.dtype != np.float32
        fields = [
            field(np.array(run_id, ">i8").tobytes()),
            field(np.array(step, ">i4").tobytes()),
            field(name.encode()),
            field(binary_array(np.asarray(shape, ">i4"), INT4_OID)),
            field(binary_array(np.asarray(arr, ">f4").ravel(), FLOAT4_OID)),
            field(b"\x01" if final else b"\x00"),
            field(arr.dtype.name.encode()),
            field(np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes())
            if exact
            else _NULL,
        ]
        payload.append(len(fields).to_bytes(2, "big") + b"".join(fields))
    payload.append(COPY_TRAILER)
    copy_payload(conn, WEIGHTS_COPY, b"".join(payload))


def latest_step(session: Session, run_id: int, *, final_only: bool = False) -> int | None:
    return session.scalar(
        text(
            "SELECT max(step) FROM signdb.weights WHERE run_id = :r AND (final OR NOT :final_only)"
        ),
        {"r": run_id, "final_only": final_only},
    )


def load_tensors(
    session: Session, run_id: int, step: int | None = None, *, optimizer: bool = True
) -> tuple[int, dict[str, np.ndarray]]:
    """(step, tensors) of a checkpoint; by default the latest one.

    ``optimizer=False`` leaves out the optimizer state (``optim.*``), which only
    a resumed run needs: scoring a model reads a third of the data.
    """
    if step is None:
        step = latest_step(session, run_id)
        if step is None:
            raise NotFound(f"run {run_id} has no stored weights; it never reached a checkpoint")
    # array_send: the array in PostgreSQL's binary format, decoded by numpy in one
    # pass; the text form would be parsed float by float into a Python list.
    rows = session.execute(
        text(
            "SELECT tensor, shape, CASE WHEN raw IS NULL THEN array_send(data) END, dtype, raw "
            "FROM signdb.weights "
            "WHERE run_id = :r AND step = :s AND (:optim OR tensor NOT LIKE 'optim.%')"
        ),
        {"r": run_id, "s": step, "optim": optimizer},
    )
    tensors = {
        name: (decode_float4_array(data) if raw is None else _decode_exact(raw, dtype)).reshape(
            shape
        )
        for name, shape, data, dtype, raw in rows
    }
    if not tensors:
        raise NotFound(f"run {run_id} has no weights at step {step}")
    return step, tensors


def _decode_exact(raw: bytes, dtype: str) -> np.ndarray:
    kind = np.dtype(dtype)
    return np.frombuffer(raw, kind.newbyteorder("<")).astype(kind)


def decode_float4_array(raw: bytes) -> np.ndarray:
    """A one-dimensional real[] without NULLs from ``array_send`` bytes, as float32."""
    header = np.frombuffer(raw, ">i4", count=3)
    ndim, has_nulls = int(header[0]), int(header[1])
    if ndim == 0:
        return np.zeros(0, np.float32)
    if ndim != 1 or has_nulls:
        raise ValueError(f"expected a flat real[] without NULLs, got {ndim} dimensions")
    n = int(np.frombuffer(raw, ">i4", count=1, offset=12)[0])
    # After the 20-byte header: (4-byte length, 4-byte value) per element.
    elements = np.frombuffer(raw, [("len", ">i4"), ("value", ">f4")], count=n, offset=20)
    return elements["value"].astype(np.float32)


def discard_after(session: Session, run_id: int, step: int) -> None:
    """Forget checkpoints past ``step``; a run resumed from ``step`` writes them again."""
    session.execute(
        text("DELETE FROM signdb.weights WHERE run_id = :r AND step > :s"), {"r": run_id, "s": step}
    )
