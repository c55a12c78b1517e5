"""``metric_buckets``: written with the points, right after a resume, and what charts read.

The buckets are a summary the database could compute itself; every test here
checks them against that computation over ``run_metrics``.
"""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest

import signdb
from signdb.db.engine import transaction
from signdb.explore import metric_history
from signdb.explore.metrics import POINTS_LIMIT
from signdb.store import metrics as metric_store

SUMMARY_FROM_POINTS = """
    SELECT name, bucket, points, first_step, last_step, min_value, max_value FROM (
        SELECT name, step / %(w)s AS bucket, count(*) AS points, min(step) AS first_step,
               max(step) AS last_step, min(value) AS min_value, max(value) AS max_value
        FROM signdb.run_metrics WHERE run_id = %(r)s GROUP BY name, step / %(w)s) s
    ORDER BY name, bucket"""

SUMMARY_FROM_BUCKETS = """
    SELECT name, bucket, sum(points)::bigint, min(first_step), max(last_step), min(min_value),
           max(max_value)
    FROM signdb.metric_buckets WHERE run_id = %(r)s AND width = %(w)s
    GROUP BY name, bucket ORDER BY name, bucket"""


def _agree(pg, run_id: int) -> None:
    for width in (64, 4096):
        params = {"r": run_id, "w": width}
        assert (
            pg.execute(SUMMARY_FROM_BUCKETS, params).fetchall()
            == pg.execute(SUMMARY_FROM_POINTS, params).fetchall()
        ), f"width {width}"


def test_bucket_summaries_match_a_direct_computation():
    rng = np.random.default_rng(0)
    steps = np.concatenate([np.arange(300), np.arange(500, 700)])[rng.permutation(500)]
    values = rng.normal(size=500)
    got = metric_store.bucket_summaries(steps, values, 64)
    for i, bucket in enumerate(got["bucket"]):
        inside = steps // 64 == bucket
        assert got["points"][i] == inside.sum()
        assert got["min_value"][i] == values[inside].min()
        assert got["max_value"][i] == values[inside].max()
        assert values[steps == got["min_step"][i]][0] == got["min_value"][i]
        assert values[steps == got["max_step"][i]][0] == got["max_value"][i]
        assert (got["first_step"][i], got["last_step"][i]) == (
            steps[inside].min(),
            steps[inside].max(),
        )


def test_flushes_that_split_buckets_still_summarise_every_point(trained_url):
    db = signdb.connect(trained_url)
    with db.start_run("mini", "buckets", classes="0,1") as run:
        for step in range(1000):
            run.log(step, loss=float(np.sin(step / 10)), acc=step / 1000)
            if step % 97 == 0:
                run.metrics.flush()  # flushes that end mid-bucket leave partial rows
    with psycopg.connect(trained_url.replace("+psycopg", ""), autocommit=True) as conn:
        partial = conn.execute(
            "SELECT count(*) - count(DISTINCT (name, bucket)) FROM signdb.metric_buckets "
            "WHERE run_id = %s AND width = 64", [run.id]).fetchone()[0]  # fmt: skip
        assert partial > 0
        _agree(conn, run.id)


def test_a_resumed_run_resummarises_what_it_discards(trained_url):
    db = signdb.connect(trained_url)
    with db.start_run("mini", "resume-buckets", classes="0,1") as run:
        for step in range(300):
            run.log(step, loss=float(step % 17))
    with transaction(db.engine, "discarding") as session:
        metric_store.discard_from(session, run.id, 150)  # what a resume from step 150 does
    with psycopg.connect(trained_url.replace("+psycopg", ""), autocommit=True) as conn:
        _agree(conn, run.id)
        assert (
            conn.execute(
                "SELECT max(last_step) FROM signdb.metric_buckets WHERE run_id = %s", [run.id]
            ).fetchone()[0]
            == 149
        )


def test_a_long_series_is_read_from_buckets_and_keeps_its_extremes(trained_url):
    db = signdb.connect(trained_url)
    n = POINTS_LIMIT * 3
    rng = np.random.default_rng(1)
    values = np.cumsum(rng.normal(size=n))
    values[12_345] = 1e6  # one spike must survive downsampling
    with db.start_run("mini", "long", classes="0,1") as run:
        run.metrics.log_series("walk", np.arange(n), values)
    history = metric_history(db.engine, run.id, "walk", points=2000)
    assert history["points"] == n and history["from_buckets_of"] == 64
    assert len(history["steps"]) <= 2000 and history["steps"] == sorted(history["steps"])
    assert max(history["values"]) == 1e6 and min(history["values"]) == values.min()
    by_step = dict(zip(range(n), values, strict=True))
    assert all(by_step[s] == v for s, v in zip(history["steps"], history["values"], strict=True))


def test_points_wait_at_most_about_a_second_before_they_are_written(trained_url):
    db = signdb.connect(trained_url)
    with db.start_run("mini", "live", classes="0,1") as run:
        run.log(0, loss=0.5)
        deadline = time.monotonic() + 10
        while not _stored(db, run.id):
            assert time.monotonic() < deadline, "the point was never written while the run idled"
            time.sleep(0.1)
        waited = 10 - (deadline - time.monotonic())
        assert run.metrics.pending == 0
    print(f"a lone point reached the database {waited:.2f} s after run.log")


def _stored(db, run_id: int) -> bool:
    with transaction(db.engine, "counting") as session:
        return metric_store.metric_points(session, run_id).get("loss", 0) == 1


@pytest.mark.parametrize("points", [1, 100_001])
def test_points_out_of_range_are_refused(trained_url, points):
    db = signdb.connect(trained_url)
    with db.start_run("mini", "range", classes="0,1") as run:
        run.log(0, loss=1.0)
    with pytest.raises(signdb.SignDBError, match="points must be from 2 to 100000"):
        metric_history(db.engine, run.id, "loss", points=points)
