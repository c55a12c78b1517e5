"""``signdb serve`` while PostgreSQL is down: a 503 naming the problem, then recovery by itself.

The test owns a private embedded server (the session's shared one must never
be stopped under other tests) and stops and starts it under a running
``signdb serve``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from signdb.db.embedded import EmbeddedServer
from tests.helpers import signdb
from tests.server.test_serve import free_port, start, stop


@pytest.fixture
def private_server():
    root = Path(tempfile.mkdtemp(prefix="signdb-serve-down-"))
    root.chmod(0o755)
    server = EmbeddedServer(root / "home")
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def test_the_server_answers_503_while_postgres_is_down_and_recovers(private_server):
    url = private_server.ensure_running()
    assert signdb("db", "upgrade", "--database-url", url).returncode == 0
    proc, base, _ = start(url, "--port", str(free_port()))
    try:
        assert httpx.get(f"{base}/api/v1/runs").status_code == 200
        private_server.stop("fast")
        down = httpx.get(f"{base}/api/v1/runs", timeout=30)
        assert down.status_code == 503
        assert "cannot talk to PostgreSQL" in down.json()["error"]
        page = httpx.get(f"{base}/", headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 503 and "cannot talk to PostgreSQL" in page.text
        private_server.ensure_running()
        deadline = time.monotonic() + 30
        while (status := httpx.get(f"{base}/api/v1/runs", timeout=30).status_code) != 200:
            assert time.monotonic() < deadline, f"still {status} 30 s after PostgreSQL returned"
            time.sleep(0.5)
        assert httpx.get(f"{base}/", headers={"Accept": "text/html"}).status_code == 200
    finally:
        assert stop(proc) == 0
