"""SIGKILL ``signdb evaluate`` mid-way: never a half-written evaluation, and a re-run completes it.

A run on digits 0/1 of the full dataset is evaluated on ``--split all`` with a
sweep of about 100,000 thresholds, so writing its evaluation rows takes long
enough to kill the process inside the write transaction. It is killed twice:
as soon as it connects (nothing stored yet) and while it replaces a complete earlier
evaluation (the old set must survive whole, or the new one be complete).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb.ml.metrics import parse_thresholds
from tests.helpers import signdb, signdb_popen

FINE = "0:1:0.0000100001"
COARSE = "0:1:0.1"


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _backend_state(conn: psycopg.Connection, pid: int) -> tuple[bool, bool]:
    """(connected, inside the write) for the evaluate process ``pid``."""
    rows = conn.execute(
        "SELECT a.pid, EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid "
        "AND l.relation = 'signdb.evaluations'::regclass AND l.mode = 'RowExclusiveLock') "
        "FROM pg_stat_activity a WHERE a.application_name = %s",
        [f"signdb[{pid}]"],
    ).fetchall()
    return bool(rows), any(r[1] for r in rows)


def _kill_when(conn: psycopg.Connection, run_id: int, *, writing: bool) -> bool:
    """Start evaluate with the fine sweep and SIGKILL it once it connects (or starts writing).

    Returns False when the process finished before the moment came.
    """
    proc = signdb_popen(
        "evaluate",
        str(run_id),
        "--split",
        "all",
        "--thresholds",
        FINE,
        "--json",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            connected, inside = _backend_state(conn, proc.pid)
            if (inside if writing else connected) and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return proc.returncode == -signal.SIGKILL
            time.sleep(0.01)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _evaluation(conn: psycopg.Connection, run_id: int) -> dict:
    rows = conn.execute(
        "SELECT threshold, tp + fp + tn + fn FROM signdb.evaluations "
        "WHERE run_id = %s AND split = 'all' ORDER BY threshold",
        [run_id],
    ).fetchall()
    ((predictions, by_split),) = conn.execute(
        "SELECT count(*), count(DISTINCT split) FROM signdb.predictions WHERE run_id = %s",
        [run_id],
    ).fetchall()
    return {
        "thresholds": [r[0] for r in rows],
        "totals": {r[1] for r in rows},
        "predictions": predictions,
        "prediction_splits": by_split,
    }


def _assert_complete(state: dict, sweep: str, size: int) -> None:
    assert state["thresholds"] == parse_thresholds(sweep).tolist()
    assert state["totals"] == {size}, "every threshold's counts must sum to the split size"
    assert state["predictions"] == size and state["prediction_splits"] == 2


def _assert_nothing_or_complete(state: dict, sweeps: list[str], size: int) -> None:
    if not state["thresholds"]:
        assert state["predictions"] == 0, "predictions without their evaluation rows"
        return
    matching = [s for s in sweeps if state["thresholds"] == parse_thresholds(s).tolist()]
    assert matching, f"a half-written sweep of {len(state['thresholds'])} thresholds"
    _assert_complete(state, matching[0], size)


def test_killed_evaluate_leaves_nothing_half_written(trained_url: str):
    trained = signdb("train", "--dataset", "sld", "--iterations", "5", "--json")
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["run_id"]
    with psycopg.connect(_conninfo(trained_url), autocommit=True) as conn:
        ((size,),) = conn.execute(
            "SELECT train_size + test_size FROM signdb.runs WHERE id = %s", [run_id]
        ).fetchall()

        # 1. Killed as soon as it connects, long before it writes: nothing is stored.
        assert _kill_when(conn, run_id, writing=False), "evaluate ended before it could be killed"
        _assert_nothing_or_complete(_evaluation(conn, run_id), [FINE], size)

        # 2. Killed while replacing a complete coarse evaluation: old or new, never a mix.
        coarse = signdb("evaluate", str(run_id), "--split", "all", "--thresholds", COARSE)
        assert coarse.returncode == 0, coarse.stderr
        _assert_complete(_evaluation(conn, run_id), COARSE, size)
        for _ in range(3):  # the write lasts about a second; a slow start may miss it
            if _kill_when(conn, run_id, writing=True):
                break
        else:
            pytest.fail("could not catch evaluate inside its write transaction")
        state = _evaluation(conn, run_id)
        _assert_nothing_or_complete(state, [COARSE, FINE], size)
        assert state["thresholds"], "the earlier complete evaluation was lost"

        # 3. A re-run completes the evaluation.
        rerun = signdb("evaluate", str(run_id), "--split", "all", "--thresholds", FINE, "--json")
        assert rerun.returncode == 0, rerun.stderr
        result = json.loads(rerun.stdout)
        assert result["rows"] == len(parse_thresholds(FINE))
        assert result["predictions"] == size
        _assert_complete(_evaluation(conn, run_id), FINE, size)
