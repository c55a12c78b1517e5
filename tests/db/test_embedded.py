"""The embedded server's known traps, each with a tested answer.

Each test uses its own data home, so it starts (and initdb's) its own cluster.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

import signdb
from signdb import config
from signdb.db.embedded import SYSTEM_USER, EmbeddedServer


@pytest.fixture
def open_tmp() -> Path:
    """A temp dir the unprivileged server user can enter (pytest's own is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="signdb-emb-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(open_tmp: Path):
    srv = EmbeddedServer(open_tmp / "home")
    yield srv
    srv.stop("immediate")


def _postmaster_pid(srv: EmbeddedServer) -> int:
    return int((srv.pgdata / "postmaster.pid").read_text().splitlines()[0])


def _connect(url: str) -> None:
    from sqlalchemy.engine import make_url

    info = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_starts_and_is_shared_by_later_calls(server):
    url = server.ensure_running()
    pid = _postmaster_pid(server)
    assert server.ensure_running() == url
    assert _postmaster_pid(server) == pid
    _connect(url)


def test_initdb_survives_a_missing_locale(open_tmp, monkeypatch):
    monkeypatch.setenv("LANG", "xx_YY.UTF-8")
    monkeypatch.setenv("LC_ALL", "xx_YY.UTF-8")
    srv = EmbeddedServer(open_tmp / "home")
    try:
        _connect(srv.ensure_running())
    finally:
        srv.stop("immediate")


def test_recovers_after_the_server_is_killed(server):
    server.ensure_running()
    pid = _postmaster_pid(server)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not server.is_running():
            break
        time.sleep(0.05)
    _connect(server.ensure_running())
    assert _postmaster_pid(server) != pid


def test_recovers_from_a_pid_file_naming_an_unrelated_process(server):
    server.ensure_running()
    server.stop("immediate")
    # A crashed server leaves postmaster.pid behind; here its pid now belongs to
    # an unrelated live process (this test), which makes postgres refuse to start.
    pid_file = server.pgdata / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{server.pgdata}\n0\n5432\n\n\n\nready\n")
    _connect(server.ensure_running())


def test_survives_the_owning_process_being_killed(server, tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from signdb.db.embedded import EmbeddedServer;"
        f"EmbeddedServer(Path({str(server.home)!r})).ensure_running(); print('up', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    proc.kill()
    proc.wait()
    started = time.monotonic()
    _connect(server.ensure_running())
    assert time.monotonic() - started < 10


def test_concurrent_first_starts_make_one_server(server):
    code = (
        "from pathlib import Path; from signdb.db.embedded import EmbeddedServer;"
        f"print(EmbeddedServer(Path({str(server.home)!r})).ensure_running())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert len({o[0] for o in outs}) == 1
    assert server.is_running()


def test_long_data_home_falls_back_to_a_short_socket_dir(tmp_path):
    home = tmp_path / ("x" * 100)
    srv = EmbeddedServer(home)
    assert len(str(srv.socket_dir)) < 90
    assert srv.socket_dir != home / "run"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch to another user")
def test_runs_for_a_non_root_user(open_tmp):
    user = pwd.getpwnam(SYSTEM_USER)  # created by the root tests above
    home = open_tmp / "nonroot-home"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    # The venv's interpreter may live under /root (pyenv); the system one of the
    # same minor version can import the venv's packages.
    python = sys.executable
    if not os.access(python, os.X_OK) or not config.others_can_traverse(Path(python).resolve()):
        python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not Path(python).exists():
        pytest.skip(f"no Python {sys.version_info[:2]} that {SYSTEM_USER} may execute")
    site = Path(psycopg.__file__).resolve().parents[1]
    src = Path(signdb.__file__).resolve().parents[1]
    code = (
        "from pathlib import Path; from signdb.db.embedded import EmbeddedServer;"
        f"s = EmbeddedServer(Path({str(home)!r})); print(s.ensure_running()); s.stop('immediate')"
    )
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        user=user.pw_uid,
        group=user.pw_gid,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": f"{src}:{site}"},
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"host={home}/run" in proc.stdout
    assert (home / "pg18" / "PG_VERSION").stat().st_uid == user.pw_uid


def test_refuses_a_data_home_others_cannot_enter(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    from signdb.errors import EmbeddedServerError

    with pytest.raises(EmbeddedServerError, match="SIGNDB_HOME"):
        EmbeddedServer(locked / "home").ensure_running()
