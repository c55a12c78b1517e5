"""Restart the embedded PostgreSQL under running runs: they wait for it and lose nothing.

The test owns a private embedded server (the session's shared server must not
be restarted under other tests), migrates it, loads two labels of the mini
subset and restarts the server while ``signdb train`` is mid-run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb.db.embedded import EmbeddedServer
from tests.helpers import signdb, signdb_popen

#: The trainer must end (one way or the other) within this many seconds of the restart.
BOUND_SECONDS = 120
ITERATIONS = 20_000
CHECKPOINT_EVERY = 1_000


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _query(url: str, sql: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(_conninfo(url), autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql, params or []).fetchall()


@pytest.fixture
def private_server():
    """An embedded server in a temp home the unprivileged server user can enter."""
    root = Path(tempfile.mkdtemp(prefix="signdb-restart-"))
    root.chmod(0o755)
    server = EmbeddedServer(root / "home")
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def test_trainer_survives_or_fails_cleanly_when_the_server_restarts(
    private_server: EmbeddedServer, mini_dataset_dir: Path, tmp_path: Path
):
    url = private_server.ensure_running()
    env = {"SIGNDB_DATABASE_URL": url}
    upgraded = signdb("db", "upgrade", "--database-url", url, "--json", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    tree = tmp_path / "mini01"
    for label in ("0", "1"):
        shutil.copytree(mini_dataset_dir / label, tree / label)
    loaded = signdb("load", str(tree), "--dataset", "mini", "--json", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["images"] == 48

    proc = signdb_popen(
        "train",
        "--dataset",
        "mini",
        "--iterations",
        str(ITERATIONS),
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
        "--json",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        run_id = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            rows = _query(url, "SELECT id, steps_done FROM signdb.runs WHERE pid = %s", [proc.pid])
            if rows and rows[0][1] >= CHECKPOINT_EVERY:
                run_id = rows[0][0]
                break
            time.sleep(0.05)
        assert run_id is not None, "the trainer never reached its first checkpoint"
        assert proc.poll() is None, "training finished before the restart; raise ITERATIONS"

        private_server.stop("fast")
        time.sleep(1.0)
        private_server.ensure_running()
        restarted = time.monotonic()
        try:
            out, err = proc.communicate(timeout=BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the trainer hung for {BOUND_SECONDS} s after the server restarted")
        elapsed = time.monotonic() - restarted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert "Traceback" not in err, err
    assert elapsed < BOUND_SECONDS
    # Writes are retried while the server is away: the run goes on and loses nothing.
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    ((status, total, done),) = _query(
        url, "SELECT status, total_steps, steps_done FROM signdb.runs WHERE id = %s", [run_id]
    )
    assert (status, total, done) == ("succeeded", ITERATIONS, ITERATIONS)
    ((n, distinct, last),) = _query(
        url,
        "SELECT count(*), count(DISTINCT step), max(step) FROM signdb.run_metrics "
        "WHERE run_id = %s AND name = 'cost'",
        [run_id],
    )
    assert (n, distinct, last) == (ITERATIONS, ITERATIONS, ITERATIONS - 1)


# A user's own run: logs a step every 10 ms and saves weights every 50 steps, so
# writes are in flight whenever the server goes away.
_OWN_RUN = """
import sys, time, numpy as np, signdb
db = signdb.connect(sys.argv[1])
with db.start_run("mini", "mine", classes="0,1") as run:
    print(run.id, flush=True)
    for step in range(int(sys.argv[2])):
        run.log(step, loss=1.0 / (step + 1))
        if step % 50 == 49:
            run.save_weights(step, {"w": np.full(8, step, np.float32)})
        time.sleep(0.01)
print("done", flush=True)
"""


def _own_run(url: str, steps: int, env: dict | None = None) -> subprocess.Popen:
    import os
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", _OWN_RUN, url, str(steps)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _loaded(private_server: EmbeddedServer, mini_dataset_dir: Path, tmp_path: Path) -> str:
    url = private_server.ensure_running()
    assert signdb("db", "upgrade", "--database-url", url).returncode == 0
    tree = tmp_path / "mini01"
    for label in ("0", "1"):
        shutil.copytree(mini_dataset_dir / label, tree / label)
    assert signdb("load", str(tree), "--dataset", "mini", "--database-url", url).returncode == 0
    return url


def test_a_start_run_block_survives_a_server_restart(
    private_server: EmbeddedServer, mini_dataset_dir: Path, tmp_path: Path
):
    url = _loaded(private_server, mini_dataset_dir, tmp_path)
    steps = 600
    proc = _own_run(url, steps)
    run_id = int(proc.stdout.readline())
    time.sleep(1.5)
    private_server.stop("fast")
    time.sleep(1.5)
    private_server.ensure_running()
    out, err = proc.communicate(timeout=BOUND_SECONDS)
    assert proc.returncode == 0, err
    assert out.strip() == "done"
    ((status, n, distinct),) = _query(
        url,
        "SELECT r.status, count(m.step), count(DISTINCT m.step) FROM signdb.runs r "
        "JOIN signdb.run_metrics m ON m.run_id = r.id WHERE r.id = %s GROUP BY r.status",
        [run_id],
    )
    assert (status, n, distinct) == ("succeeded", steps, steps)
    ((checkpoints,),) = _query(
        url, "SELECT count(DISTINCT step) FROM signdb.weights WHERE run_id = %s", [run_id]
    )
    assert checkpoints == steps // 50


def test_past_the_retry_deadline_the_run_fails_naming_the_server(
    private_server: EmbeddedServer, mini_dataset_dir: Path, tmp_path: Path
):
    url = _loaded(private_server, mini_dataset_dir, tmp_path)
    proc = _own_run(url, 100_000, env={"SIGNDB_RETRY_SECONDS": "2"})
    run_id = int(proc.stdout.readline())
    time.sleep(1.0)
    private_server.stop("fast")
    stopped = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    waited = time.monotonic() - stopped
    assert proc.returncode != 0
    assert "cannot talk to PostgreSQL" in err and "DatabaseUnavailable" in err
    # The deadline holds: 2 s of retries (plus the metric flush interval of up to
    # 5 s before a write is even attempted, and the failure-marking attempts).
    assert waited < 20, waited
    private_server.ensure_running()
    shown = signdb(
        "runs", "show", str(run_id), "--json", "--database-url", url,
        env={"PGOPTIONS": "-c signdb.heartbeat_timeout=1s"},
    )  # fmt: skip
    assert json.loads(shown.stdout)["status"] in ("failed", "interrupted")


def test_sigterm_in_a_start_run_block_stores_interrupted(
    private_server: EmbeddedServer, mini_dataset_dir: Path, tmp_path: Path
):
    import signal

    url = _loaded(private_server, mini_dataset_dir, tmp_path)
    proc = _own_run(url, 100_000)
    run_id = int(proc.stdout.readline())
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "RunInterrupted" in err
    ((status, error, logged),) = _query(
        url,
        "SELECT status, error, (SELECT count(*) FROM signdb.run_metrics WHERE run_id = r.id) "
        "FROM signdb.runs r WHERE id = %s",
        [run_id],
    )
    assert status == "interrupted" and "interrupted by SIGTERM" in error
    assert logged > 0  # what was logged before the signal was flushed
