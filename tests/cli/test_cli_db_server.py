"""`signdb db status` and `signdb db stop`: each test starts its own embedded server in a
private data home (never the shared test server) and stops it at the end."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from signdb.db.embedded import EmbeddedServer
from tests.helpers import signdb


@pytest.fixture
def home(monkeypatch):
    """A private data home the unprivileged server user can enter (when run as root)."""
    root = Path(tempfile.mkdtemp(prefix="signdb-life-"))
    root.chmod(0o755)
    path = root / "home"
    monkeypatch.setenv("SIGNDB_HOME", str(path))
    monkeypatch.delenv("SIGNDB_DATABASE_URL", raising=False)
    yield path
    EmbeddedServer(path).stop("immediate")  # whatever a failed test left running
    shutil.rmtree(root, ignore_errors=True)


def _status() -> dict:
    done = signdb("db", "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_status_starts_nothing_then_follows_the_server(home: Path):
    before = _status()
    assert before["embedded"] is True and before["running"] is False
    assert before["pid"] is None and before["size_bytes"] == 0 and before["version"] is None
    assert not (home / "pg18").exists()  # asking did not create a cluster

    assert signdb("datasets", "list").returncode == 0  # any command starts the server
    running = _status()
    pid = int((home / "pg18" / "postmaster.pid").read_text().split()[0])
    assert running["running"] is True and running["pid"] == pid and _alive(pid)
    assert running["data_directory"] == str(home / "pg18")
    assert Path(running["socket"]).is_socket()
    assert running["version"].startswith("18.") and running["size_bytes"] > 10 << 20
    assert running["revision"] == running["head"] is not None
    human = signdb("db", "status").stdout
    assert f"running (pid {pid})" in human and str(home / "pg18") in human

    refused = signdb("db", "stop")  # no terminal, no --yes
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert _alive(pid)
    stopped = signdb("db", "stop", "--yes", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {
        "stopped": True,
        "was_running": True,
        "pid": pid,
        "data_directory": str(home / "pg18"),
        "sessions": [],
    }
    assert not _alive(pid) and not (home / "pg18" / "postmaster.pid").exists()
    after = _status()
    assert after["running"] is False and after["version"] == "18"  # the cluster's major
    again = signdb("db", "stop", "--yes")
    assert again.returncode == 0 and "is not running" in again.stdout
    # Stopped cleanly (a shutdown checkpoint), so the next start needs no recovery.
    assert "database system was shut down at" in _restart_log(home)


def _restart_log(home: Path) -> str:
    log = home / "pg18.log"
    size = log.stat().st_size
    assert signdb("datasets", "list").returncode == 0
    return log.read_text()[size:]


def test_stop_refuses_while_a_client_is_connected_unless_forced(home: Path):
    server = EmbeddedServer(home)
    server.ensure_running()
    with psycopg.connect(host=str(server.socket_dir), user="postgres", dbname="signdb") as conn:
        conn.execute("SET application_name = 'notebook'")
        refused = signdb("db", "stop", "--yes")
        assert refused.returncode == 1
        assert (
            "1 client(s) are connected" in refused.stderr and "notebook on signdb" in refused.stderr
        )
        assert "--force" in refused.stderr and server.is_running()
        forced = signdb("db", "stop", "--yes", "--force", "--json")
        assert forced.returncode == 0, forced.stderr
        assert [s["application"] for s in json.loads(forced.stdout)["sessions"]] == ["notebook"]
        assert not server.is_running()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")


def test_stop_refuses_a_server_given_by_url(home: Path, db_url: str):
    done = signdb("db", "stop", "--yes", env={"SIGNDB_DATABASE_URL": db_url})
    assert done.returncode == 1
    assert "stops the embedded server only" in done.stderr
    assert not (home / "pg18").exists()


def test_status_of_a_url_names_version_and_revision(db_url: str, home: Path):
    done = signdb("db", "status", "--json", env={"SIGNDB_DATABASE_URL": db_url})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["embedded"] is False and out["running"] is True
    assert out["revision"] == out["head"] and out["version"][:2].isdigit()
    assert out["pid"] is None and out["data_directory"] is None
    assert not (home / "pg18").exists()  # the embedded server was left alone


def test_status_of_a_server_that_is_down_is_one_line(home: Path):
    done = signdb("db", "status", env={"SIGNDB_DATABASE_URL": _closed_port_url()})
    assert done.returncode == 1
    assert "cannot talk to PostgreSQL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _closed_port_url() -> str:
    import socket

    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/none"


assert os.sep == "/"  # /proc is read above: Linux only, as the embedded server is
