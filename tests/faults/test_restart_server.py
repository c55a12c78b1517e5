"""Restart the embedded PostgreSQL under a running trainer: it finishes or fails clearly, never hangs.

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
    # Shown with `pytest -s`: which of the two acceptable behaviours happened.
    print(f"restart outcome: exit {proc.returncode} after {elapsed:.1f} s; {err.strip()}")
    if proc.returncode == 0:
        # (a) Reconnected and finished: the run is complete, metrics included.
        result = json.loads(out)
        assert result["status"] == "succeeded"
        ((status, total, done),) = _query(
            url, "SELECT status, total_steps, steps_done FROM signdb.runs WHERE id = %s", [run_id]
        )
        assert (status, total, done) == ("succeeded", ITERATIONS, ITERATIONS)
        ((costs,),) = _query(
            url,
            "SELECT count(DISTINCT step) FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost'",
            [run_id],
        )
        assert costs == ITERATIONS
        return

    # (b) Gave up: exit 1, one clear line on stderr, and the run is not left running.
    assert proc.returncode == 1, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and "PostgreSQL" in lines[0], lines[0]
    time.sleep(2.5)
    shown = signdb(
        "runs",
        "show",
        str(run_id),
        "--json",
        env={**env, "PGOPTIONS": "-c signdb.heartbeat_timeout=2s"},
    )
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] in ("failed", "interrupted"), run["status"]
    assert run["error"], "a failed or interrupted run must say why"
    ((stored,),) = _query(url, "SELECT status FROM signdb.runs WHERE id = %s", [run_id])
    assert stored in ("failed", "interrupted")
    print(f"restart outcome: run {run_id} stored as {stored!r}: {run['error'][:200]}")

    # The run is recoverable: resuming finishes it with exactly one metric row per step.
    resumed = signdb("train", "--resume", str(run_id), "--json", env=env, timeout=BOUND_SECONDS)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    ((n, distinct, last),) = _query(
        url,
        "SELECT count(*), count(DISTINCT step), max(step) FROM signdb.run_metrics "
        "WHERE run_id = %s AND name = 'cost'",
        [run_id],
    )
    assert (n, distinct, last) == (ITERATIONS, ITERATIONS, ITERATIONS - 1)
