"""PostgreSQL binary COPY through the psycopg 3 connection underneath a SQLAlchemy session.

Two ways in: :func:`copy_rows` lets psycopg encode Python rows (convenient,
a few microseconds a row), and :func:`binary_copy_payload` pieces for callers
that assemble the wire format with numpy (metrics, tensors: nanoseconds a value).
Errors are not translated here: the caller's ``transaction(engine, doing)``
maps them, naming what was being written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import psycopg
from sqlalchemy.orm import Session

INT4_OID = 23
FLOAT4_OID = 700
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def raw_connection(session: Session) -> psycopg.Connection:
    """The psycopg connection of the session's current transaction."""
    return session.connection().connection.driver_connection


def copy_rows(
    conn: psycopg.Connection, statement: str, types: Sequence[str], rows: Iterable[Sequence]
) -> int:
    """Stream rows with binary COPY; returns how many were written."""
    n = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def copy_payload(conn: psycopg.Connection, statement: str, payload: bytes) -> None:
    """Send an already-encoded binary COPY stream (header, rows, trailer)."""
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(payload)


def field(data: bytes) -> bytes:
    """One field of a binary COPY row: its length, then its bytes."""
    return len(data).to_bytes(4, "big", signed=True) + data


def binary_array(values: np.ndarray, element_oid: int) -> bytes:
    """PostgreSQL's binary format of a one-dimensional array without NULLs."""
    if len(values) == 0:  # PostgreSQL's empty array has no dimensions at all
        return np.array([0, 0, element_oid], ">i4").tobytes()
    header = np.array([1, 0, element_oid, len(values), 1], ">i4").tobytes()
    elements = np.empty(len(values), dtype=[("len", ">i4"), ("value", values.dtype)])
    elements["len"] = values.dtype.itemsize
    elements["value"] = values
    return header + elements.tobytes()


def copy_out_records(conn: psycopg.Connection, query: str, fields: Sequence[str]) -> np.ndarray:
    """Rows of ``query`` (fixed-width, non-NULL columns of numpy ``fields`` types, e.g.
    ``">i4"``, ``">f8"``) as one structured array, read with binary COPY.

    Decoding the stream with one ``np.frombuffer`` costs nanoseconds a row where
    fetching rows through the driver costs microseconds: a chart's 16,000
    bucket rows read in a few milliseconds.
    """
    record = np.dtype(
        [("nfields", ">i2")]
        + [item for i, f in enumerate(fields) for item in ((f"len{i}", ">i4"), (f"f{i}", f))]
    )
    with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
        data = b"".join(bytes(block) for block in copy)
    extension = int.from_bytes(data[15:19], "big")
    body = data[19 + extension : -2]  # header, then the trailer's -1
    rows = np.frombuffer(body, dtype=record)
    return rows[[f"f{i}" for i in range(len(fields))]]
