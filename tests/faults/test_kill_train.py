"""SIGKILL a trainer: its run must not stay "running" once the heartbeat is stale, and it resumes."""

from __future__ import annotations

import json
import signal
import time

import psycopg
from sqlalchemy.engine import make_url

from tests.helpers import signdb, signdb_popen


def test_killed_trainer_reads_interrupted_and_resumes(trained_url):
    info = make_url(trained_url).set(drivername="postgresql").render_as_string(hide_password=False)
    proc = signdb_popen(
        "train",
        "--dataset",
        "sld",
        "--iterations",
        "600",
        "--checkpoint-every",
        "20",
        "--json",
        stdout=-1,
        stderr=-1,
    )
    with psycopg.connect(info, autocommit=True) as conn:
        run_id = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT id, steps_done FROM signdb.runs WHERE pid = %s ORDER BY id DESC LIMIT 1",
                [proc.pid],
            ).fetchone()
            if row and row[1] >= 20:
                run_id = row[0]
                break
            time.sleep(0.1)
        assert run_id is not None, "the trainer never reached its first checkpoint"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert (
            conn.execute("SELECT status FROM signdb.runs WHERE id = %s", [run_id]).fetchone()[0]
            == "running"
        )
        time.sleep(2.5)
        # With a 2 s heartbeat timeout the dead run reads as interrupted, and listing stores it.
        shown = signdb(
            "runs",
            "show",
            str(run_id),
            "--json",
            env={"PGOPTIONS": "-c signdb.heartbeat_timeout=2s"},
        )
        assert json.loads(shown.stdout)["status"] == "interrupted"
        assert (
            conn.execute("SELECT status FROM signdb.runs WHERE id = %s", [run_id]).fetchone()[0]
            == "interrupted"
        )
        # Resume finishes the run from its last checkpoint.
        resumed = signdb("train", "--resume", str(run_id), "--json", timeout=600)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "succeeded"
        steps = conn.execute(
            "SELECT count(*), count(DISTINCT step), max(step) FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost'",
            [run_id],
        ).fetchone()
        assert steps == (600, 600, 599)
