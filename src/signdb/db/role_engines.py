"""Engines whose every transaction acts as one of signdb's group roles: how the server
lets PostgreSQL, not its own code, decide what a request may do.

Each transaction of a role engine begins with ``SET LOCAL ROLE``; a viewer's
is also ``READ ONLY`` with a statement timeout. So whatever a viewer's request
runs, the database refuses any write (``signdb_analyst`` has SELECT only, and
the transaction itself is read-only), and an editor's request can do what
``signdb_writer`` may and no more. The server's login role must be a member of
both roles (``GRANT signdb_analyst, signdb_writer TO <login>``); a superuser is.

A login role can set its role back with ``RESET ROLE``, so these engines run
only signdb's own statements: no text a user sends is ever executed on them.
"""

from __future__ import annotations

import os
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, text

from signdb.config import parse_database_url
from signdb.db.roles import ANALYST, WRITER

VIEWER = "viewer"
EDITOR = "editor"
#: Token role -> (group role, read only, statement timeout).
ACTING = {
    VIEWER: (ANALYST, True, "15s"),
    EDITOR: (WRITER, False, "60s"),
}


@lru_cache(maxsize=8)
def role_engine(url: str, role: str, *, pool_size: int = 8) -> Engine:
    """A pooled engine for ``url`` whose transactions act as ``role`` (viewer or editor)."""
    group, read_only, timeout = ACTING[role]
    engine = create_engine(
        parse_database_url(url),
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        connect_args={
            "application_name": f"signdb-serve[{os.getpid()}] {role}",
            "connect_timeout": 5,
        },
    )

    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_conn, _record):  # noqa: ANN001 - DBAPI hook
        with dbapi_conn.cursor() as cur:
            cur.execute("SET lock_timeout = '10s'")
            cur.execute("SET idle_in_transaction_session_timeout = '5min'")
        dbapi_conn.commit()

    # One statement, one round trip: set_config(..., true) is SET LOCAL, and a
    # transaction may turn read-only at any point (only the way back is refused).
    settings = [("role", group), ("statement_timeout", timeout)]
    if read_only:
        settings.insert(0, ("transaction_read_only", "on"))
    act = "SELECT " + ", ".join(f"set_config('{k}', '{v}', true)" for k, v in settings)

    @event.listens_for(engine, "begin")
    def _act_as_role(conn):  # noqa: ANN001 - a SQLAlchemy Connection
        conn.exec_driver_sql(act)  # module constants, never user text

    return engine


def missing_memberships(engine: Engine) -> list[str]:
    """The group roles the engine's login cannot act as (empty when it can act as both)."""
    with engine.connect() as conn:
        return [
            role
            for role in (ANALYST, WRITER)
            if not conn.execute(
                text("SELECT pg_has_role(current_user, :r, 'MEMBER')"), {"r": role}
            ).scalar()
        ]
