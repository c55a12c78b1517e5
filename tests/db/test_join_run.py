"""One run, several processes, through the Python API: rank 0 records, the others join and read."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy.engine import make_url

import signdb
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, RankFailed
from signdb.store import replication
from tests.helpers import login_role, named_tree


@pytest.fixture
def db(db_url, tmp_path):
    handle = signdb.connect(db_url)
    handle.load(named_tree(tmp_path / "photos", ["cat", "coffee"], 12), "photos", size=16)
    return handle


def _row(pg, run_id: int) -> tuple:
    return pg.execute(
        "SELECT status, world_size, error FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()


def test_joined_ranks_read_the_run_and_write_nothing(db, pg):
    with db.start_run("photos", "test:ranks", world_size=2) as run:
        with db.join_run(run.id, rank=1, world_size=2) as other:
            assert other.classes == run.classes and not other.writes
            X, y, ids = other.arrays("test")
            assert np.array_equal(ids, run.arrays("test")[2])
            other.log(0, loss=9.0)
            other.save_weights(0, {"w": np.ones(2, np.float32)}, final=True)
            other.checkpoint(1, {"w": np.ones(2, np.float32)}, final=False, total_steps=2)
            assert other.log_predictions("test", ids, np.full((len(ids), 2), 0.5)) == 0
        run.log(0, loss=1.0)
    assert _row(pg, run.id) == ("succeeded", 2, None)
    assert pg.execute(
        "SELECT name, value FROM signdb.run_metrics WHERE run_id = %s", [run.id]
    ).fetchall() == [("loss", 1.0)]
    assert (
        pg.execute("SELECT count(*) FROM signdb.weights WHERE run_id = %s", [run.id]).fetchone()[0]
        == 0
    )


def test_a_ranks_own_error_fails_the_run_naming_it_and_the_first_error_stays(db, pg):
    with pytest.raises(ValueError, match="invalid literal"):
        with db.start_run("photos", "test:ranks", world_size=2) as run:
            with db.join_run(run.id, rank=1, world_size=2) as other:
                other.lease.set_peers({0: "pid 1 on a", 1: "pid 2 on b"})
                int("one")  # the user's loop fails on rank 1
    status, _, error = _row(pg, run.id)
    assert status == "failed"
    assert error.startswith("rank 1 of 2 (pid 2 on b): ValueError: invalid literal"), error


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0, "world_size": 2}, "a joining rank is 1 .. world_size - 1"),
        ({"rank": 2, "world_size": 2}, "a joining rank is 1 .. world_size - 1"),
        ({"rank": 1, "world_size": 3}, "started for 2 processes, not 3"),
    ],
)
def test_joining_refusals(db, kwargs, match):
    with db.start_run("photos", "test:ranks", world_size=2) as run:
        with pytest.raises(InvalidArgument, match=match):
            db.join_run(run.id, **kwargs)


def test_a_run_that_is_not_running_cannot_be_joined(db):
    with db.start_run("photos", "test:ranks", world_size=2) as run:
        pass
    with pytest.raises(InvalidArgument, match=f"run {run.id} is succeeded; rank 0 must start"):
        db.join_run(run.id, rank=1, world_size=2)


def test_a_rank_cannot_be_held_twice(db):
    with db.start_run("photos", "test:ranks", world_size=2) as run:
        with db.join_run(run.id, rank=1, world_size=2):
            with pytest.raises(RankFailed, match="rank 1 of run .* is already taken"):
                with db.join_run(run.id, rank=1, world_size=2):
                    pass


def test_a_rank_that_dies_is_named_by_the_survivor(db, db_url):
    """SIGKILL: the dead process's connection closes and its lock with it."""
    with db.start_run("photos", "test:ranks", world_size=2) as run:
        code = (
            "import signdb, sys, time\n"
            f"run = signdb.connect({db_url!r}).join_run({run.id}, rank=1, world_size=2)\n"
            "run.__enter__()\n"
            "print('joined', flush=True)\n"
            "time.sleep(600)\n"
        )
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "joined"
            run.lease.set_peers({0: "pid 10 on here", 1: f"pid {child.pid} on there"})
            assert run.lease.dead_ranks(wait=0) == []
            child.kill()
            child.wait()
            started = time.monotonic()
            message = run.lease.explain("RuntimeError: Connection closed by peer")
        finally:
            if child.poll() is None:
                child.kill()
    assert time.monotonic() - started < 5
    assert message == (
        f"rank 1 of 2 (pid {child.pid} on there) died (its connection to PostgreSQL closed); "
        "rank 0 of 2 (pid 10 on here) then stopped: RuntimeError: Connection closed by peer"
    )


def test_world_size_is_recorded_and_shown(db, pg):
    with db.start_run("photos", "test:ranks") as single:
        pass
    with db.start_run("photos", "test:ranks", world_size=3) as three:
        pass
    assert _row(pg, single.id)[1] == 1 and _row(pg, three.id)[1] == 3
    assert db.run(three.id)["world_size"] == 3
    with pytest.raises(InvalidArgument, match="world_size must be a number of processes >= 1"):
        db.start_run("photos", "test:ranks", world_size=0)


def test_the_writer_role_can_run_every_rank(db, db_url, pg_admin_url):
    """Rank locks, the primary's WAL position and the ranks' view need no more than signdb_writer."""
    with login_role(pg_admin_url, "signdb_writer") as user:
        url = make_url(db_url).set(username=user).render_as_string(hide_password=False)
        writer = signdb.connect(url)
        with writer.start_run("photos", "test:writer", world_size=2) as run:
            with writer.join_run(run.id, rank=1, world_size=2) as other:
                other.arrays("train")
                assert run.lease.dead_ranks(wait=0) == []
            with transaction(writer.engine) as session:
                assert replication.primary_lsn(session).count("/") == 1
                assert not replication.replay_position(session).in_recovery
        assert writer.run(run.id)["status"] == "succeeded"
        writer.engine.dispose()
