"""Served predictions in PostgreSQL: logged off the request path, sampled, bounded; the hourly view."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC

import numpy as np
import psycopg
import pytest

from signdb.db.engine import get_engine, transaction
from signdb.errors import InvalidArgument
from signdb.serving import PredictionLog, infer, invocations, predict_uploads, set_alias
from signdb.serving.prediction_log import check_fraction
from signdb.store.served import ServedBatch, copy_served


def _request(n: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)
    tensor = {"name": "images", "shape": [n, 16, 16, 1], "datatype": "UINT8"}
    return json.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}).encode()


def _logged(runs, model: str) -> list[tuple]:
    with psycopg.connect(runs.conninfo) as conn:
        return conn.execute(
            "SELECT run_id, served_at, predicted, confidence, probabilities, latency_ms "
            "FROM signdb.served_predictions WHERE model = %s ORDER BY served_at, predicted",
            [model],
        ).fetchall()


def _alias(runs, key: str) -> str:
    name = f"log-{uuid.uuid4().hex[:8]}"
    set_alias(get_engine(runs.url), name, runs.runs[key], "tester")
    return name


def test_every_served_image_is_logged_with_what_it_was_answered(served_runs):
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "softmax")
    log = PredictionLog(engine, 1.0, interval=0.05)
    answers = []
    for seed in range(3):
        body = json.loads(infer(engine, name, _request(4, seed), log=log).body)
        answers.append({o["name"]: o["data"] for o in body["outputs"]})
    log.close()
    rows = _logged(served_runs, name)
    assert len(rows) == 12 and log.written == 12 and log.dropped == 0
    assert {r[0] for r in rows} == {served_runs.runs["softmax"]}
    # Compared as float32, the type both sides hold (real[] and the FP32 output).
    logged = sorted((r[2], tuple(np.float32(r[4]).tolist())) for r in rows)
    k = len(rows[0][4])
    served = sorted(
        (label, tuple(np.float32(a["probabilities"][i * k : (i + 1) * k]).tolist()))
        for a in answers
        for i, label in enumerate(a["label"])
    )
    assert logged == served
    for _, _, _, confidence, probabilities, latency in rows:
        assert confidence == pytest.approx(max(probabilities)) and latency > 0


def test_the_other_routes_log_too(served_runs):
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "mlp-numpy")
    log = PredictionLog(engine, 1.0, interval=0.05)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    invocations(
        engine, name, json.dumps({"inputs": pixels.tolist()}).encode(), "application/json", log=log
    )
    path = sorted((served_runs.image_dir / "3").iterdir())[0]
    predict_uploads(engine, name, [(path.name, path.read_bytes())], log=log)
    log.close()
    assert len(_logged(served_runs, name)) == 3


def test_logging_off_writes_nothing(served_runs):
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "softmax")
    infer(engine, name, _request(5))
    zero = PredictionLog(engine, 0.0, interval=0.05)
    infer(engine, name, _request(5), log=zero)
    zero.close()
    assert _logged(served_runs, name) == [] and zero.written == 0


def test_a_sampling_fraction_logs_about_that_share(served_runs):
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "softmax")
    log = PredictionLog(engine, 0.25, interval=0.05, seed=3)
    for seed in range(10):
        infer(engine, name, _request(40, seed), log=log)
    log.close()
    logged = len(_logged(served_runs, name))
    assert logged == log.written and 60 <= logged <= 140  # 100 expected of 400 (sd 8.7)


def test_a_full_buffer_drops_new_answers_instead_of_waiting(served_runs):
    engine = get_engine(served_runs.url)
    log = PredictionLog(engine, 1.0, interval=3600, batch_rows=10_000, max_rows=5)
    proba, labels = np.full((3, 2), 0.5, np.float32), np.array([0, 1, 1])
    assert log.record("full", 1, proba, labels, 1.0) == 3
    assert log.record("full", 1, proba, labels, 1.0) == 0  # 6 > 5: dropped, not queued
    assert log.pending == 3 and log.dropped == 3
    log.close()
    assert log.written == 3


def test_logging_survives_a_database_that_refuses_writes_for_a_while(served_runs):
    engine = get_engine(served_runs.url)
    name = f"outage-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(served_runs.conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE signdb.served_predictions RENAME TO served_predictions_away")
        try:
            log = PredictionLog(engine, 1.0, interval=0.05)
            started = time.perf_counter()
            log.record(name, 1, np.full((2, 2), 0.5, np.float32), np.array([0, 1]), 1.0)
            assert time.perf_counter() - started < 0.05  # the request never waits on it
            deadline = time.monotonic() + 10
            while log.stats.failures == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert log.stats.failures >= 1 and "served_predictions" in log.stats.last_error
            assert log.pending == 2
        finally:
            conn.execute("ALTER TABLE signdb.served_predictions_away RENAME TO served_predictions")
    log.flush(timeout=60)
    log.close()
    assert log.written == 2 and len(_logged(served_runs, name)) == 2


def test_the_fraction_is_checked():
    assert check_fraction(0.5) == 0.5
    for bad in (-0.1, 1.5, "all", True):
        with pytest.raises(InvalidArgument, match="from 0 to 1"):
            check_fraction(bad)


def test_the_hourly_view_matches_the_logged_rows(served_runs):
    engine = get_engine(served_runs.url)
    run_id = served_runs.runs["softmax"]
    name = f"drift-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(7)
    hour = 3_600_000_000
    base = (time.time_ns() // 1000) // hour * hour - 5 * hour  # five hours ago, on the hour
    batches = []
    for h, n in ((0, 30), (1, 20), (3, 7)):
        proba = rng.dirichlet(np.ones(10), n).astype(np.float32)
        predicted = proba.argmax(axis=1)
        batches.append(
            ServedBatch(
                model=name,
                run_id=run_id,
                served_at_us=base + h * hour + rng.integers(0, hour, n),
                predicted=predicted.astype(np.int32),
                confidence=proba.max(axis=1),
                probabilities=proba,
                latency_ms=rng.uniform(1, 9, n).astype(np.float32),
            )
        )
    with transaction(engine) as session:
        assert copy_served(session, batches) == 57
    rows = _logged(served_runs, name)
    expected: dict = defaultdict(list)
    for _, served_at, predicted, confidence, _, latency in rows:
        utc = served_at.astimezone(UTC)
        expected[utc.replace(minute=0, second=0, microsecond=0)].append(
            (predicted, confidence, latency)
        )
    with psycopg.connect(served_runs.conninfo) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        view = conn.execute(
            "SELECT hour, run_id, predictions, mean_confidence, mean_latency_ms, class_counts, "
            "class_mix FROM signdb.served_hourly WHERE model = %s ORDER BY hour",
            [name],
        ).fetchall()
    assert [v[0] for v in view] == sorted(expected)
    assert [v[2] for v in view] == [30, 20, 7]
    for hour_start, vid, count, mean_conf, mean_latency, counts, mix in view:
        got = expected[hour_start]
        assert vid == run_id and count == len(got)
        # real values arrive here as their shortest text: equal to 7 digits
        assert mean_conf == pytest.approx(np.mean([c for _, c, _ in got]), rel=1e-6)
        assert mean_latency == pytest.approx(np.mean([lat for _, _, lat in got]), rel=1e-6)
        # The class mix by class name (the mini digits are named "0".."9").
        want = Counter(str(p) for p, _, _ in got)
        assert counts == dict(want)
        assert mix == pytest.approx({k: v / len(got) for k, v in want.items()})
        assert sum(mix.values()) == pytest.approx(1.0)


def test_interleaved_batches_of_two_models_are_each_written_whole(served_runs):
    """One flush holds many requests' batches, of any models and class counts, in the
    order they were served; each row must arrive with its own values."""
    engine = get_engine(served_runs.url)
    rng = np.random.default_rng(3)
    names = {2: f"two-{uuid.uuid4().hex[:6]}", 10: f"ten-{uuid.uuid4().hex[:6]}"}
    runs = {2: served_runs.runs["logreg"], 10: served_runs.runs["softmax"]}
    now = time.time_ns() // 1000
    batches, sent = [], defaultdict(list)
    for i, (k, n) in enumerate([(10, 1), (2, 3), (10, 4), (2, 1), (10, 1)]):
        proba = rng.dirichlet(np.ones(k), n).astype(np.float32)
        at = now + i * 1000 + np.arange(n) * 10
        latency = rng.uniform(1, 9, n).astype(np.float32)
        batches.append(
            ServedBatch(
                model=names[k],
                run_id=runs[k],
                served_at_us=at,
                predicted=proba.argmax(axis=1).astype(np.int32),
                confidence=proba.max(axis=1),
                probabilities=proba,
                latency_ms=latency,
            )
        )
        sent[k] += list(zip(proba.argmax(axis=1), proba.max(axis=1), proba, latency, strict=True))
    with transaction(engine) as session:
        assert copy_served(session, batches) == 10
    for k, name in names.items():
        rows = sorted(_logged(served_runs, name), key=lambda r: r[1])  # by served_at
        assert len(rows) == len(sent[k])
        for (run_id, _, predicted, confidence, probabilities, latency), want in zip(
            rows, sent[k], strict=True
        ):
            assert run_id == runs[k] and predicted == want[0]
            assert confidence == pytest.approx(want[1], rel=1e-6)
            assert probabilities == pytest.approx(want[2].tolist(), rel=1e-6)
            assert latency == pytest.approx(want[3], rel=1e-6)


def test_an_analyst_reads_the_view_but_cannot_write_the_log(served_runs):
    with psycopg.connect(served_runs.conninfo) as conn:
        conn.execute("SET ROLE signdb_analyst")
        conn.execute("SELECT * FROM signdb.served_hourly LIMIT 1").fetchall()
        conn.execute("SELECT * FROM signdb.model_alias_history LIMIT 1").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO signdb.served_predictions VALUES ('x', 1, now(), 0, 1, '{1}', 1)"
            )
