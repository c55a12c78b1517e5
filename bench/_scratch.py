"""Scratch databases for benchmarks: created on the configured (default: embedded) server,
migrated to head, and dropped when the block ends, even on failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from signdb.db.engine import get_engine, resolve_url


def server_url(database: str) -> str:
    """SQLAlchemy URL of ``database`` on the server signdb would use (embedded by default)."""
    url, _ = resolve_url(None)
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def libpq_conninfo(sa_url: str) -> str:
    """The same URL without the SQLAlchemy driver suffix, for psycopg.connect."""
    return make_url(sa_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin() -> psycopg.Connection:
    return psycopg.connect(libpq_conninfo(server_url("postgres")), autocommit=True)


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def scratch_url(name: str) -> Iterator[str]:
    """An empty database ``name`` (re-created if left over), dropped afterwards."""
    _drop(name)
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url(name)
    finally:
        _drop(name)


@contextmanager
def scratch_engine(name: str) -> Iterator[Engine]:
    """A migrated scratch database ``name``, as a signdb engine."""
    from signdb.db import migrate

    with scratch_url(name) as url:
        engine = get_engine(url)
        try:
            migrate.upgrade(engine)
            yield engine
        finally:
            # Pooled connections would keep the database busy; a disposed
            # engine reconnects if the same name is created again later.
            engine.dispose()


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """(median seconds, all timings) of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], times
