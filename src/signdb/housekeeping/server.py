"""``signdb db status`` and ``signdb db stop``: the server signdb talks to, and the embedded
one's life cycle.

Neither starts the embedded server: ``status`` of a stopped server says so. ``stop``
only stops the embedded server (another server belongs to its administrator); it
refuses while other clients are connected, unless ``force``, because stopping
disconnects them (a running trainer's writes would fail).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from signdb.config import database_url_from, parse_database_url, redact
from signdb.db.embedded import ClientSession, EmbeddedServer, default_server
from signdb.db.engine import get_engine
from signdb.errors import ConfigError, InUse
from signdb.results import Result


@dataclass
class ServerStatus(Result):
    """Where the database is and what state it is in; embedded fields are None for a URL."""

    embedded: bool
    running: bool
    url: str  # password redacted
    version: str | None = None
    revision: str | None = None  # the signdb schema's Alembic revision (None: no schema)
    head: str | None = None  # the code's revision
    pid: int | None = None
    socket: str | None = None
    data_directory: str | None = None
    size_bytes: int | None = None
    log: str | None = None


@dataclass
class StopResult(Result):
    """What ``db stop`` did; ``sessions`` are the clients it disconnected (with ``force``)."""

    stopped: bool
    was_running: bool
    pid: int | None
    data_directory: str
    sessions: list[dict[str, Any]] = field(default_factory=list)


def _revisions(url: str) -> tuple[str | None, str]:
    from signdb.db import migrate

    engine = get_engine(url)
    try:
        return migrate.current_revision(engine), migrate.head_revision(engine)
    finally:
        engine.dispose()  # nothing of ours may keep the server busy after a status


def server_status(database_url: str | None = None) -> ServerStatus:
    """The configured server's state: ``database_url``, ``$SIGNDB_DATABASE_URL``, else embedded."""
    raw = database_url_from(database_url)
    if raw is None:
        return embedded_status(default_server())
    from signdb.db.engine import server_version

    url = parse_database_url(raw).render_as_string(hide_password=False)
    version = server_version(get_engine(url))
    revision, head = _revisions(url)
    return ServerStatus(
        embedded=False, running=True, url=redact(url), version=version, revision=revision, head=head
    )


def embedded_status(server: EmbeddedServer) -> ServerStatus:
    running = server.is_running()
    status = ServerStatus(
        embedded=True,
        running=running,
        url=server.url(),
        version=server.server_version(),
        pid=server.pid() if running else None,
        socket=str(server.socket_dir / ".s.PGSQL.5432"),
        data_directory=str(server.pgdata),
        size_bytes=server.disk_usage() if server.pgdata.exists() else 0,
        log=str(server.log_path),
    )
    if running:
        status.revision, status.head = _revisions(server.url())
    return status


def stop_embedded(
    database_url: str | None = None, *, force: bool = False, server: EmbeddedServer | None = None
) -> StopResult:
    """Stop the embedded server cleanly (PostgreSQL's fast shutdown: open transactions roll
    back, a checkpoint is written). Refused while other clients are connected, unless ``force``.
    """
    server = server or default_server()
    sessions = check_stoppable(database_url, force=force, server=server)
    pid = server.pid()
    if not server.is_running():
        return StopResult(
            stopped=False, was_running=False, pid=None, data_directory=str(server.pgdata)
        )
    server.stop("fast")
    return StopResult(
        stopped=True,
        was_running=True,
        pid=pid,
        data_directory=str(server.pgdata),
        sessions=[s.__dict__ for s in sessions],
    )


def check_stoppable(
    database_url: str | None, *, force: bool, server: EmbeddedServer
) -> list[ClientSession]:
    """The clients a stop would cut off; raises when a URL is set or, without ``force``,
    when there are any."""
    if (raw := database_url_from(database_url)) is not None:
        raise ConfigError(
            f"`signdb db stop` stops the embedded server only, and a database URL is set "
            f"({redact(raw)}); stop that server with its own tools, or unset "
            "SIGNDB_DATABASE_URL / --database-url to stop the embedded one"
        )
    if not server.is_running():
        return []
    sessions = connected_clients(server)
    if sessions and not force:
        raise InUse(
            f"{len(sessions)} client(s) are connected to the embedded server "
            f"({describe_sessions(sessions)}); stopping it would disconnect them: let them "
            "finish, or pass --force"
        )
    return sessions


def connected_clients(server: EmbeddedServer) -> list[ClientSession]:
    """Other clients of the running server; this process's own pooled connections excluded."""
    own = f"signdb[{os.getpid()}]"
    return [s for s in server.client_sessions() if s.application != own]


def describe_sessions(sessions: list[ClientSession]) -> str:
    shown = [
        f"{s.application or 'a client'} on {s.database}, {s.state or 'connected'}"
        for s in sessions[:5]
    ]
    return "; ".join(shown) + (f"; and {len(sessions) - 5} more" if len(sessions) > 5 else "")
