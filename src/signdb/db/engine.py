"""Engines and sessions, and the one place database failures become SignDBErrors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from signdb.config import database_url_from, parse_database_url, redact
from signdb.errors import DatabaseError, InputError, SignDBError


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


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back entirely."""
    with translate_errors(engine), session_factory(engine).begin() as session:
        yield session


@contextmanager
def translate_errors(engine: Engine | None = None) -> Iterator[None]:
    """Map driver/SQLAlchemy failures to DatabaseError with a redacted URL."""
    where = f" at {redact(engine.url)}" if engine is not None else ""
    try:
        yield
    except SignDBError:
        raise
    except exc.OperationalError as e:
        raise DatabaseError(
            f"cannot talk to PostgreSQL{where}: {_first_line(e)}; check that the server is "
            "running and that --database-url / SIGNDB_DATABASE_URL is right"
        ) from e
    except exc.DataError as e:
        raise InputError(f"PostgreSQL rejected a value: {_first_line(e)}") from e
    except exc.ProgrammingError as e:
        if "does not exist" in str(e.orig):
            raise DatabaseError(
                f"the signdb schema is missing or out of date{where}: {_first_line(e)}; "
                "run `signdb db upgrade`"
            ) from e
        raise


def _first_line(e: exc.DBAPIError) -> str:
    return str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
