"""``signdb.served_predictions``: what served models answered. No commits here.

Rows arrive in batches from the prediction log's writer thread, which shares
the interpreter with the requests being served: each batch is one binary COPY
assembled with numpy (a packed record array per model and run), so writing
costs the requests nanoseconds of the GIL a row, not a Python call a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sqlalchemy.orm import Session

from signdb.store.copy import COPY_HEADER, COPY_TRAILER, FLOAT4_OID, copy_payload, raw_connection

SERVED_COPY = (
    "COPY signdb.served_predictions "
    "(model, run_id, served_at, predicted, confidence, probabilities, latency_ms) "
    "FROM STDIN (FORMAT BINARY)"
)
#: PostgreSQL's timestamps count microseconds from 2000-01-01 UTC; Unix time from 1970.
PG_EPOCH_US = 946_684_800_000_000


@dataclass(frozen=True)
class ServedBatch:
    """Served images of one model name and run: one row each."""

    model: str
    run_id: int
    served_at_us: np.ndarray  # int64 Unix microseconds
    predicted: np.ndarray  # int32 labels
    confidence: np.ndarray  # float32
    probabilities: np.ndarray  # float32 (n, k)
    latency_ms: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.predicted)


def served_copy_payload(batches: list[ServedBatch]) -> bytes:
    """The binary COPY stream of ``batches``.

    Batches of one model name, run and class count become one packed record
    array: at batch size 1 a flush holds hundreds of one-row batches, and a
    record dtype each would cost the serving threads more of the GIL than the rows.
    """
    groups: dict[tuple[str, int, int], list[ServedBatch]] = {}
    for b in batches:
        groups.setdefault((b.model, b.run_id, b.probabilities.shape[1]), []).append(b)
    payload = [COPY_HEADER]
    for (model, run_id, k), group in groups.items():
        name = model.encode()
        rows = np.empty(sum(len(b) for b in group), dtype=_record(len(name), k))
        rows["nfields"] = 7
        rows["model_len"], rows["model"] = len(name), name
        rows["run_len"], rows["run"] = 8, run_id
        rows["at_len"], rows["at"] = 8, _joined(group, "served_at_us") - PG_EPOCH_US
        rows["pred_len"], rows["pred"] = 4, _joined(group, "predicted")
        rows["conf_len"], rows["conf"] = 4, _joined(group, "confidence")
        rows["arr_len"] = 20 + 8 * k
        rows["arr_head"] = (1, 0, FLOAT4_OID, k, 1)
        rows["arr"]["len"], rows["arr"]["v"] = 4, _joined(group, "probabilities")
        rows["lat_len"], rows["lat"] = 4, _joined(group, "latency_ms")
        payload.append(rows.tobytes())
    payload.append(COPY_TRAILER)
    return b"".join(payload)


@lru_cache(maxsize=64)
def _record(name_bytes: int, k: int) -> np.dtype:
    """One served_predictions row in COPY's binary format, for a model name of
    ``name_bytes`` bytes and ``k`` classes."""
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("model_len", ">i4"), ("model", f"S{name_bytes}"),
            ("run_len", ">i4"), ("run", ">i8"),
            ("at_len", ">i4"), ("at", ">i8"),
            ("pred_len", ">i4"), ("pred", ">i4"),
            ("conf_len", ">i4"), ("conf", ">f4"),
            # real[]: ndim, has-nulls, element oid, length, lower bound, then (len, value) pairs
            ("arr_len", ">i4"), ("arr_head", ">i4", (5,)), ("arr", [("len", ">i4"), ("v", ">f4")], (k,)),
            ("lat_len", ">i4"), ("lat", ">f4"),
        ]
    )  # fmt: skip


def _joined(group: list[ServedBatch], field: str) -> np.ndarray:
    arrays = [getattr(b, field) for b in group]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def copy_served(session: Session, batches: list[ServedBatch]) -> int:
    """COPY ``batches`` into served_predictions; returns the row count."""
    copy_payload(raw_connection(session), SERVED_COPY, served_copy_payload(batches))
    return sum(len(b) for b in batches)
