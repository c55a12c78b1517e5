"""A load killed with SIGKILL mid-way, then re-run, ends with exactly the full dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.cli.test_cli_load import REFERENCE_COUNTS
from tests.helpers import signdb, signdb_popen


def _count(pg) -> int:
    return pg.execute("SELECT count(*) FROM signdb.images").fetchone()[0]


def test_kill_9_mid_load_then_rerun_gives_the_exact_dataset(db_url, pg, shared_dataset):
    # Own session: the decoding workers can be reaped by group after the kill.
    proc = signdb_popen(
        "load", str(shared_dataset), "--dataset", "digits", "--json",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # The first committed batch is the earliest moment that proves the
        # kill lands between commits, with most of the dataset still to come.
        while _count(pg) == 0:
            assert proc.poll() is None, "the load ended before writing anything"
            assert time.monotonic() < deadline, "no batch was committed within 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned decoding workers, if any
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL
    at_kill = _count(pg)
    assert 0 < at_kill < 2062, f"the kill did not land mid-load ({at_kill} rows)"

    rerun = signdb("load", str(shared_dataset), "--dataset", "digits", "--json")
    assert rerun.returncode == 0, rerun.stderr
    out = json.loads(rerun.stdout)
    assert out["images"] == 2062
    assert out["added"] + out["skipped_duplicates"] == 2062
    assert out["skipped_duplicates"] >= at_kill  # the committed batches were kept

    total, distinct = pg.execute(
        "SELECT count(*), count(DISTINCT sha256) FROM signdb.images"
    ).fetchone()
    assert (total, distinct) == (2062, 2062)
    labels = dict(pg.execute("SELECT label::text, count(*) FROM signdb.images GROUP BY 1"))
    assert labels == REFERENCE_COUNTS
