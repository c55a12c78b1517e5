"""Reads from a hot standby: a primary and a standby of it (pg_basebackup -R), started here.

Image reads (the batched COPY feed, the per-image RunDataset, run.batches)
go to the standby once it has replayed the run's split assignment; every
write goes to the primary; a lagging standby is waited for, and past the
bound it is named with its lag.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

import signdb
from signdb.db import migrate
from signdb.db.engine import get_engine
from signdb.errors import ConfigError, StandbyBehind
from signdb.torch import RunDataset
from tests.helpers import signdb as signdb_cli
from tests.standby import Pair, primary_and_standby

DB = "signdb_standby"
COPY_READ = "COPY (SELECT i.id, i.label, i.pixels"
#: A server-side cursor (the per-image reads) shows its FETCH, not its query.
CURSOR_READ = "FETCH FORWARD"


@pytest.fixture(scope="module")
def pair(mini_dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with primary_and_standby(log_statements=True) as pair:
        with pair.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{DB}"')
        migrate.upgrade(get_engine(pair.url(DB)))
        tree = tmp_path_factory.mktemp("mini3")
        for label in ("0", "1", "2"):
            shutil.copytree(mini_dataset_dir / label, tree / label)
        signdb.connect(pair.url(DB)).load(tree, dataset="mini", size=16, workers=1)
        pair.wait_for_standby(DB)
        yield pair
        for url in (pair.url(DB), pair.url(DB, standby=True)):
            get_engine(url).dispose()


@pytest.fixture
def db(pair: Pair) -> signdb.Database:
    return signdb.connect(pair.url(DB), read_url=pair.url(DB, standby=True))


def _sessions(pair: Pair, *, standby: bool) -> list[tuple[str, str]]:
    """(state, query) of this process's connections to one server."""
    with pair.connect(DB, standby=standby) as conn:
        return conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
            [f"signdb[{os.getpid()}]"],
        ).fetchall()


def _reading(sessions: list[tuple[str, str]], text: str) -> bool:
    return any(text in query for _, query in sessions)


@pytest.mark.parametrize(
    ("feed", "query"),
    [
        ("batched", COPY_READ),
        ("per image", CURSOR_READ),
        ("run.batches", CURSOR_READ),
    ],
)
def test_image_reads_go_to_the_standby(pair, db, feed, query):
    with db.start_run("mini", "test:standby", classes="all", cache="off") as run:
        if feed == "batched":
            items = iter(RunDataset(run, "train", batch_size=8))
        elif feed == "per image":
            items = iter(RunDataset(run, "train", chunk=4))
        else:
            items = iter(run.batches("train", batch_size=4))
        next(items)  # the read is open, mid-stream: its statement is in pg_stat_activity
        on_standby, on_primary = _sessions(pair, standby=True), _sessions(pair, standby=False)
        del items
    assert _reading(on_standby, query), on_standby
    assert not any(_reading(on_primary, q) for q in ("i.pixels", CURSOR_READ)), on_primary
    with pair.connect(DB) as conn:  # the run and its outcome were written to the primary
        assert conn.execute(
            "SELECT status FROM signdb.runs WHERE id = %s", [run.id]
        ).fetchone() == ("succeeded",)


def test_cli_training_reads_images_from_the_standby_and_writes_the_primary(pair):
    primary_log, standby_log = (len(text) for text in pair.logs())
    trained = signdb_cli(
        "train", "--dataset", "mini", "--classes", "all", "--model", "cnn", "--engine", "torch",
        "--layers", "conv4-pool-dense8", "--batch-size", "16", "--iterations", "2",
        "--read-database-url", pair.url(DB, standby=True), "--json",
        env={"SIGNDB_DATABASE_URL": pair.url(DB)},
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["run_id"]
    primary, standby = pair.logs()
    primary, standby = primary[primary_log:], standby[standby_log:]
    # Every batch of every epoch was read by one COPY on the standby, none on the primary.
    assert len(re.findall(re.escape(COPY_READ), standby)) == 2
    assert COPY_READ not in primary and "i.pixels FROM" not in primary
    assert "INSERT INTO signdb.run_images" in primary  # the split assignment: a write
    with pair.connect(DB) as conn:
        steps = conn.execute(
            "SELECT count(*) FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost'",
            [run_id],
        ).fetchone()[0]
    assert steps > 0


def test_a_lagging_standby_is_waited_for(pair, db):
    with pair.connect(DB, standby=True) as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        resume = threading.Timer(1.5, lambda: _resume_replay(pair))
        with db.start_run("mini", "test:lagging", classes="all") as run:
            started = time.monotonic()
            resume.start()
            try:
                engine = run.data.image_engine()  # waits until the standby has the run
            finally:
                resume.join()
            waited = time.monotonic() - started
            assert sum(len(y) for _, y in RunDataset(run, "test", batch_size=8)) == len(
                run.arrays("test")[1]
            )
    assert engine is db.standbys[0]
    assert waited >= 1.0


def test_a_standby_too_far_behind_is_named_with_its_lag(pair, db, monkeypatch):
    monkeypatch.setenv("SIGNDB_READ_WAIT_SECONDS", "0.5")
    with pair.connect(DB, standby=True) as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            with db.start_run("mini", "test:behind", classes="all") as run:
                with pytest.raises(StandbyBehind) as caught:
                    RunDataset(run, "train", batch_size=8)
        finally:
            _resume_replay(pair)
    message = str(caught.value)
    assert f"run {run.id}'s split assignment" in message
    assert re.search(r"[\d,]+ bytes short of [0-9A-F]+/[0-9A-F]+", message), message
    assert f"port={pair.standby_port}" in message and "SIGNDB_READ_WAIT_SECONDS=0.5" in message


def test_a_read_url_that_is_no_standby_of_the_primary_is_refused(pair, db_url):
    db = signdb.connect(pair.url(DB), read_url=db_url)  # another server's signdb database
    with db.start_run("mini", "test:not-a-standby", classes="all") as run:
        with pytest.raises(ConfigError, match="does not hold run .* split assignment"):
            run.data.image_engine()


def _resume_replay(pair: Pair) -> None:
    with pair.connect(DB, standby=True) as standby:
        standby.execute("SELECT pg_wal_replay_resume()")
