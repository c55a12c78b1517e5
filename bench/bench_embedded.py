"""How fast the embedded PostgreSQL is ready: first use, a cold start, and reuse.

Each figure is the time until ``EmbeddedServer.ensure_running()`` returns, that is
until the server answers and the signdb database exists, in a private data home.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from signdb.db.embedded import EmbeddedServer

REPEATS = 5


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run() -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="signdb-bench-embedded-"))
    root.chmod(0o755)  # the server user must be able to enter it when we are root
    server = EmbeddedServer(root / "home")
    try:
        first = _timed(server.ensure_running)
        cold = []
        for _ in range(REPEATS):
            server.stop()
            cold.append(_timed(server.ensure_running))
        warm = [_timed(server.ensure_running) for _ in range(REPEATS)]
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return [
        {"benchmark": "embedded server", "case": "first use (initdb + start)", "seconds": first},
        {
            "benchmark": "embedded server",
            "case": f"start, cluster exists (median of {REPEATS})",
            "seconds": statistics.median(cold),
            "goal": "about 1 s",
            "ok": statistics.median(cold) < 1.5,
        },
        {
            "benchmark": "embedded server",
            "case": f"already running (median of {REPEATS})",
            "seconds": statistics.median(warm),
        },
    ]
