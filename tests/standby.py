"""A private primary and a hot standby of it, for the tests and the benchmark that read from one.

The primary is an embedded server in a temporary home (never the session's
shared one); the standby is ``pg_basebackup -R`` of it into another
directory, started on another port (its socket sits beside the primary's).
Both run as the unprivileged server user when we are root, as the embedded
server does, and both are stopped and deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from signdb.db.embedded import SUPERUSER, EmbeddedServer


@dataclass(frozen=True)
class Pair:
    primary: EmbeddedServer
    standby_dir: Path
    standby_port: int

    def logs(self) -> tuple[str, str]:
        """(primary's, standby's) server logs so far."""
        standby_log = self.standby_dir.parent / "standby.log"
        return (
            self.primary.log_path.read_text(errors="replace"),
            standby_log.read_text(errors="replace"),
        )

    def url(self, database: str, *, standby: bool = False) -> str:
        if not standby:
            return self.primary.url(database)
        return (
            f"postgresql+psycopg://{SUPERUSER}@/{database}"
            f"?host={self.primary.socket_dir}&port={self.standby_port}"
        )

    def connect(self, database: str, *, standby: bool = False) -> psycopg.Connection:
        port = self.standby_port if standby else 5432
        return psycopg.connect(
            host=str(self.primary.socket_dir),
            port=port,
            user=SUPERUSER,
            dbname=database,
            autocommit=True,
        )

    def wait_for_standby(self, database: str, seconds: float = 30) -> None:
        """Until ``database`` (created on the primary) exists on the standby too."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                with self.connect(database, standby=True):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def primary_and_standby(*, log_statements: bool = False) -> Iterator[Pair]:
    """``log_statements``: both servers log every statement (``Pair.logs`` reads them)."""
    root = Path(tempfile.mkdtemp(prefix="signdb-standby-"))
    root.chmod(0o755)  # the server user must reach both data directories
    primary = EmbeddedServer(root / "primary")
    standby_dir = root / "standby"
    port = free_port()
    extra = " -c log_statement=all" if log_statements else ""
    options = os.environ.get("SIGNDB_EMBEDDED_OPTIONS")
    try:
        os.environ["SIGNDB_EMBEDDED_OPTIONS"] = (options or "") + extra
        try:
            primary.ensure_running()
        finally:
            _restore("SIGNDB_EMBEDDED_OPTIONS", options)
        primary._chown(root)
        primary._run(
            "pg_basebackup",
            "-h",
            str(primary.socket_dir),
            "-U",
            SUPERUSER,
            "-D",
            str(standby_dir),
            "-R",  # standby.signal and primary_conninfo: a hot standby of the primary
            "-X",
            "stream",
            "-c",
            "fast",  # not a spread checkpoint: that waits minutes
        )
        log = root / "standby.log"
        log.touch()
        primary._chown(log)
        primary._run(
            "pg_ctl",
            "-D",
            str(standby_dir),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {primary.socket_dir}{extra}",
            "start",
        )
        yield Pair(primary, standby_dir, port)
    finally:
        if (standby_dir / "PG_VERSION").exists():
            primary._run(
                "pg_ctl", "-D", str(standby_dir), "-m", "immediate", "-w", "stop", check=False
            )
        primary.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
