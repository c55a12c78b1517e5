"""Optuna's storage in signdb's database: its own schema ``optuna``, created by the owner.

Optuna's RDBStorage keeps sweeps (studies and trials) in the same PostgreSQL.
Facts this module is built on (Optuna 5.0, measured; see docs/sweeps.md):

* The schema goes in the URL (``options=-csearch_path=optuna``), never only in
  ``connect_args``: Optuna's own migrations see the URL alone and would build a
  second set of tables in ``public``. The session time zone is pinned to UTC,
  because heartbeats are stored as the session's wall time.
* Tables are created once, by the migrating owner (``signdb db upgrade``):
  several workers creating them at once collide on PostgreSQL's type catalogue.
  Workers open the storage with ``skip_table_creation=True`` and need DML only.
* Idle pooled connections are pinged before use (optuna#5600).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL, make_url

from signdb.errors import DatabaseError, DatabaseUnavailable

SCHEMA = "optuna"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 180


def optuna_url(url: str | URL) -> str:
    """``url`` with Optuna's schema and UTC as the session's search_path and time zone."""
    # Never str() a URL: SQLAlchemy renders the password as ***.
    base = url if isinstance(url, URL) else make_url(url)
    query = dict(base.query)
    query["options"] = f"-csearch_path={SCHEMA} -ctimezone=UTC"
    return base.set(query=query).render_as_string(hide_password=False)


def make_storage(
    url: str | URL,
    *,
    heartbeat_interval: int = HEARTBEAT_SECONDS,
    grace_period: int = GRACE_SECONDS,
    create_tables: bool = False,
) -> Any:
    """An Optuna RDBStorage on signdb's database, with retries of trials whose worker died."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            optuna_url(url),
            engine_kwargs={
                "pool_pre_ping": True,
                "pool_recycle": 1800,
                "pool_size": 2,
                "max_overflow": 2,
                "connect_args": {
                    "keepalives": 1,
                    "keepalives_idle": 60,
                    "keepalives_interval": 10,
                    "keepalives_count": 5,
                    "connect_timeout": 10,
                    "application_name": f"signdb-sweep[{os.getpid()}]",
                },
            },
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1
            ),
            skip_table_creation=not create_tables,
        )


def ensure_tables(connection: Connection) -> None:
    """Create schema ``optuna`` and Optuna's tables in it (idempotent; the owner's step)."""
    from sqlalchemy import text

    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    connection.commit()
    storage = make_storage(connection.engine.url, create_tables=True)
    storage.engine.dispose()


def schema_exists(connection: Connection) -> bool:
    from sqlalchemy import text

    return bool(
        connection.execute(
            text("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = :s)"), {"s": SCHEMA}
        ).scalar()
    )


@contextmanager
def optuna_errors(doing: str) -> Iterator[None]:
    """Optuna's storage failures as signdb errors naming what was being done."""
    import optuna
    import sqlalchemy.exc

    try:
        yield
    except optuna.exceptions.StorageInternalError as e:
        cause = e.__cause__ or e
        if isinstance(cause, sqlalchemy.exc.OperationalError):
            raise DatabaseUnavailable(
                f"cannot talk to PostgreSQL while {doing}: {_first_line(cause)}; check that "
                "the server is running, then re-run the command"
            ) from e
        raise DatabaseError(f"Optuna's storage failed while {doing}: {_first_line(cause)}") from e


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0] if text else type(error).__name__


@contextmanager
def quiet() -> Iterator[None]:
    """Optuna's experimental-feature warnings and per-trial INFO logs are not ours to print."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(verbosity)
