"""PostgreSQL COPY through the psycopg 3 connection underneath a SQLAlchemy session."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from sqlalchemy.orm import Session

from signdb.errors import DatabaseError, InputError


def raw_connection(session: Session) -> psycopg.Connection:
    """The psycopg connection of the session's current transaction."""
    return session.connection().connection.driver_connection


@contextmanager
def driver_errors() -> Iterator[None]:
    """Map psycopg errors raised on the raw connection to SignDBErrors.

    SQLAlchemy wraps only what goes through its own ``execute``; statements run
    on the raw connection (COPY) would otherwise reach the user as tracebacks.
    The session still rolls the transaction back as the error unwinds it.
    """
    try:
        yield
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as e:
        raise InputError(f"PostgreSQL rejected a value: {_first_line(e)}") from e
    except psycopg.OperationalError as e:
        raise DatabaseError(
            f"PostgreSQL failed while writing images: {_first_line(e)}; check that the server "
            "is running and re-run the command (a load resumes where it stopped)"
        ) from e


def _first_line(e: psycopg.Error) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


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
