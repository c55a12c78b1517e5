"""Engines and sessions, and the one place database failures become SignDBErrors."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from signdb.config import database_url_from, parse_database_url, redact
from signdb.errors import (
    DatabaseError,
    DatabaseUnavailable,
    InputError,
    PermissionDenied,
    SchemaOutOfDate,
    SignDBError,
)

T = TypeVar("T")


def resolve_url(flag: str | None = None) -> tuple[str, bool]:
    """(URL, is_embedded). ``--database-url`` wins over the environment; neither means embedded."""
    raw = database_url_from(flag)
    if raw:
        return parse_database_url(raw).render_as_string(hide_password=False), False
    from signdb.db.embedded import embedded_url  # starts a server: only when asked

    return embedded_url(), True


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One pooled engine per URL and process."""
    engine = create_engine(
        parse_database_url(url),
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        connect_args={"application_name": f"signdb[{os.getpid()}]", "connect_timeout": 10},
    )

    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_conn, _record):  # noqa: ANN001 - DBAPI hook
        with dbapi_conn.cursor() as cur:
            # Never let a forgotten lock stall a command forever.
            cur.execute("SET lock_timeout = '30s'")
            cur.execute("SET idle_in_transaction_session_timeout = '10min'")
        dbapi_conn.commit()

    return engine


def server_version(engine: Engine) -> str:
    """The server's version, e.g. ``15.8`` (any role may ask)."""
    with translate_errors(engine, "asking the server's version"), engine.connect() as conn:
        return str(conn.exec_driver_sql("SHOW server_version").scalar())


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine, doing: str = "working with the database") -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back entirely.

    ``doing`` ("writing images", "starting a run") names the work in any error.
    """
    with translate_errors(engine, doing), session_factory(engine).begin() as session:
        yield session


#: The one table from driver errors to SignDBErrors, most specific first. Each
#: message gets ``{doing}`` (what signdb was doing), ``{where}`` (the redacted
#: URL) and ``{detail}`` (the server's first line).
DRIVER_ERRORS: tuple[
    tuple[type[psycopg.Error] | tuple[type[psycopg.Error], ...], type[SignDBError], str], ...
] = (
    (
        psycopg.errors.LockNotAvailable,
        DatabaseError,
        "timed out waiting for a lock while {doing}{where}: {detail}; another signdb command "
        "holds it: retry when that one finishes",
    ),
    (
        psycopg.errors.QueryCanceled,
        DatabaseError,
        "PostgreSQL cancelled a statement while {doing}{where}: {detail}; retry, or raise the "
        "server's statement_timeout",
    ),
    (
        # InterfaceError: a connection used after the server closed it.
        (psycopg.OperationalError, psycopg.InterfaceError),
        DatabaseUnavailable,
        "cannot talk to PostgreSQL{where} while {doing}: {detail}; check that the server is "
        "running and that --database-url / SIGNDB_DATABASE_URL is right, then re-run the command",
    ),
    (
        psycopg.errors.UndefinedTable,
        SchemaOutOfDate,
        "the signdb schema is missing or out of date{where} while {doing}: {detail}; "
        "run `signdb db upgrade`",
    ),
    (
        psycopg.errors.UndefinedColumn,
        SchemaOutOfDate,
        "the signdb schema is missing or out of date{where} while {doing}: {detail}; "
        "run `signdb db upgrade`",
    ),
    (
        psycopg.errors.UndefinedFunction,
        SchemaOutOfDate,
        "the signdb schema is missing or out of date{where} while {doing}: {detail}; "
        "run `signdb db upgrade`",
    ),
    (
        # The analyst role (or a viewer's READ ONLY transaction) writing.
        (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction),
        PermissionDenied,
        "PostgreSQL refused while {doing}{where}: {detail}; connect as a role with this "
        "privilege (signdb_analyst only reads; signdb_writer or the owner writes)",
    ),
    (psycopg.errors.DataError, InputError, "PostgreSQL rejected a value while {doing}: {detail}"),
    (
        psycopg.errors.IntegrityError,
        InputError,
        "PostgreSQL refused a row while {doing}: {detail}",
    ),
)


def translate_driver_error(
    error: BaseException, doing: str, engine: Engine | None = None
) -> SignDBError | None:
    """The SignDBError for a psycopg (or SQLAlchemy-wrapped) error, or None if unmapped."""
    orig = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated and orig is None:
        orig = psycopg.OperationalError(str(error))
    where = f" at {redact(engine.url)}" if engine is not None else ""
    for driver_class, ours, template in DRIVER_ERRORS:
        if isinstance(orig, driver_class):
            return ours(template.format(doing=doing, where=where, detail=_first_line(orig)))
    if isinstance(error, exc.TimeoutError):  # the pool had no connection to give
        return DatabaseError(
            f"no database connection became free while {doing}{where}: {error}; retry"
        )
    return None


@contextmanager
def translate_errors(
    engine: Engine | None = None, doing: str = "working with the database"
) -> Iterator[None]:
    """Turn driver and SQLAlchemy failures into SignDBErrors (see :data:`DRIVER_ERRORS`)."""
    try:
        yield
    except SignDBError:
        raise
    except (psycopg.Error, exc.DBAPIError, exc.TimeoutError) as e:
        ours = translate_driver_error(e, doing, engine)
        if ours is None:
            raise
        raise ours from e


def retrying(
    fn: Callable[[], T], *, seconds: float, on_retry: Callable[[str], None] | None = None
) -> T:
    """``fn()``, called again with backoff while the server is away, for up to ``seconds``.

    Only :class:`DatabaseUnavailable` is retried: a statement the server refused
    would be refused again. Past the deadline the last error propagates.
    """
    deadline = time.monotonic() + seconds
    delay = 0.25
    while True:
        try:
            return fn()
        except DatabaseUnavailable as e:
            if time.monotonic() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(str(e))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
