"""Metric logging throughput: signdb's MetricLogger against MLflow and raw COPY.

All in one run on the server signdb would use (the embedded one by default):
signdb writes to a scratch database ``signdb_bench_logging``, MLflow's SQL
store to ``signdb_bench_mlflow`` beside it; both are dropped at the end.

* ``MetricLogger.log`` once per point, and ``MetricLogger.log_series`` per
  metric, each for ``POINTS`` points of one run (10 metrics x 100,000 steps),
  final flush included.
* ``run.log(step, loss=..., accuracy=..., lr=...)``, the Python API a user's
  training loop calls: 3 metrics a step, the same number of points, every value
  checked as the API checks it.
* Raw COPY, the ceiling: the same rows as one binary COPY whose payload is
  built before the clock starts.
* MLflow ``MlflowClient.log_batch`` with 1,000 metrics per call, for
  ``MLFLOW_POINTS`` points (rates are rates; MLflow is slow enough that a
  million points would take minutes).

``run_metrics`` is emptied before each measurement, so every variant writes
into the same-sized index. Figures are medians of ``REPEATS``.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Engine, text

from bench._scratch import libpq_conninfo, scratch_engine, scratch_url
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import transaction
from signdb.store import datasets as ds_store
from signdb.store import runs as run_store
from signdb.store.metrics import METRICS_COPY, metrics_copy_payload
from signdb.tracking import MetricLogger

DB = "signdb_bench_logging"
MLFLOW_DB = "signdb_bench_mlflow"
METRICS = 10
STEPS = 100_000
POINTS = METRICS * STEPS
API_STEPS = POINTS // 3
GOAL_API = 0.9  # run.log against MetricLogger.log
MLFLOW_POINTS = 20_000
MLFLOW_BATCH = 1_000
REPEATS = 3
GOAL_RATE = 1_000_000
GOAL_VS_MLFLOW = 75


def _row(metric: str, value: Any, unit: str, goal: str = "", ok: Any = None) -> dict[str, Any]:
    return {
        "benchmark": "metric logging",
        "metric": metric,
        "value": value,
        "unit": unit,
        "goal": goal,
        "ok": ok,
    }


class Points:
    """The points every variant writes: metric ``m{k}`` at steps 0..STEPS-1."""

    def __init__(self, metrics: int, steps: int) -> None:
        rng = np.random.default_rng(0)
        self.names = [f"m{k}" for k in range(metrics)]
        self.steps = np.arange(steps, dtype=np.int64)
        self.values = {name: rng.standard_normal(steps) for name in self.names}
        # Per-point order as a training loop produces it: every metric of a step, step by step.
        self.triples = [
            (int(s), name, float(self.values[name][s])) for s in range(steps) for name in self.names
        ]


def _new_run(engine: Engine) -> int:
    with transaction(engine) as session:
        dataset = ds_store.get_or_create_dataset(session, "bench", Preprocessing())
        return run_store.create_run(
            session,
            dataset_id=dataset.id,
            name="bench_logging",
            model="logreg",
            classes=[0, 1],
            hyperparams={},
            trainer={},
            engine="numpy",
            seed=0,
            test_fraction=0.15,
            code_version="bench",
            host=socket.gethostname(),
            pid=os.getpid(),
        )


def _empty_metrics(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE signdb.run_metrics"))


def _count(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            text("SELECT count(*) FROM signdb.run_metrics WHERE run_id = :r"), {"r": run_id}
        )


def _log_per_point(engine: Engine, run_id: int, points: Points) -> None:
    logger = MetricLogger(engine, run_id)
    log = logger.log
    for step, name, value in points.triples:
        log(step, name, value)
    logger.flush()


def _api_run(engine: Engine, run_id: int):  # noqa: ANN202 - signdb.tracking.Run
    from signdb.tracking import Run

    with transaction(engine) as session:
        record = run_store.get_run(session, run_id)
    return Run(engine, record, (1, 1, 1), cache="off")  # logging needs no images


def _api_log(run, values: list[list[float]]) -> float:  # noqa: ANN001
    """Seconds to log every step's three values through ``run.log`` and flush."""
    start = time.perf_counter()
    log = run.log
    for step, (loss, accuracy, lr) in enumerate(values):
        log(step, loss=loss, accuracy=accuracy, lr=lr)
    run.metrics.flush()
    return time.perf_counter() - start


def _log_series(engine: Engine, run_id: int, points: Points) -> None:
    logger = MetricLogger(engine, run_id)
    for name in points.names:
        logger.log_series(name, points.steps, points.values[name])
    logger.flush()


def _copy_payload(run_id: int, points: Points) -> bytes:
    """The binary COPY stream of every point (built before timing starts)."""
    return metrics_copy_payload(
        run_id, {name: (points.steps, points.values[name]) for name in points.names}
    )


def _raw_copy(conninfo: str, payload: bytes) -> float:
    with psycopg.connect(conninfo) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(METRICS_COPY) as copy:
            copy.write(payload)
        conn.commit()
        return time.perf_counter() - start


def _signdb_rates(engine: Engine, points: Points) -> dict[str, float]:
    conninfo = libpq_conninfo(engine.url.render_as_string(hide_password=False))
    api_values = np.random.default_rng(1).random((API_STEPS, 3)).tolist()  # built untimed
    variants: dict[str, Callable[[int], float]] = {
        "log": lambda run: _timed(lambda: _log_per_point(engine, run, points)),
        "log_series": lambda run: _timed(lambda: _log_series(engine, run, points)),
        "run.log": lambda run: _api_log(_api_run(engine, run), api_values),
        "raw COPY": lambda run: _raw_copy(conninfo, _copy_payload(run, points)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(REPEATS):
        for name, measure in variants.items():
            _empty_metrics(engine)
            run = _new_run(engine)
            seconds[name].append(measure(run))
            written = _count(engine, run)
            expected = 3 * API_STEPS if name == "run.log" else POINTS
            if written != expected:
                raise AssertionError(f"{name} wrote {written} of {expected} points")
    return {
        name: (3 * API_STEPS if name == "run.log" else POINTS) / statistics.median(s)
        for name, s in seconds.items()
    }


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _mlflow_rate(url: str) -> float:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("bench_logging")
    points = Points(METRICS, MLFLOW_POINTS // METRICS)
    timestamp = int(time.time() * 1000)
    batches = [
        [Metric(name, value, timestamp, step) for step, name, value in chunk]
        for chunk in (
            points.triples[i : i + MLFLOW_BATCH]
            for i in range(0, len(points.triples), MLFLOW_BATCH)
        )
    ]
    seconds = []
    try:
        for _ in range(REPEATS):
            run_id = client.create_run(experiment).info.run_id
            start = time.perf_counter()
            for batch in batches:
                client.log_batch(run_id, metrics=batch)
            seconds.append(time.perf_counter() - start)
            logged = sum(len(client.get_metric_history(run_id, n)) for n in points.names)
            if logged != MLFLOW_POINTS:
                raise AssertionError(f"MLflow stored {logged} of {MLFLOW_POINTS} points")
    finally:
        # MLflow keeps a pooled engine per store; release it so the database can go.
        client._tracking_client.store.engine.dispose()
    return MLFLOW_POINTS / statistics.median(seconds)


def run() -> list[dict[str, Any]]:
    points = Points(METRICS, STEPS)
    with scratch_url(MLFLOW_DB) as mlflow_url:
        mlflow = _mlflow_rate(mlflow_url)
    with scratch_engine(DB) as engine:
        rates = _signdb_rates(engine, points)
    rows = [_row("MLflow log_batch (1,000 per call)", mlflow, "points/s")]
    for name, label in (
        ("log", "MetricLogger.log per point"),
        ("log_series", "MetricLogger.log_series"),
    ):
        rate = rates[name]
        rows.append(_row(label, rate, "points/s", f">= {GOAL_RATE:,}", rate >= GOAL_RATE))
        rows.append(
            _row(
                f"{label} / MLflow",
                rate / mlflow,
                "x",
                f">= {GOAL_VS_MLFLOW}x",
                rate / mlflow >= GOAL_VS_MLFLOW,
            )
        )
    api = rates["run.log"]
    rows.append(_row("run.log, 3 metrics per step", api, "points/s"))
    rows.append(
        _row(
            "run.log / MetricLogger.log",
            api / rates["log"],
            "x",
            f">= {GOAL_API}x",
            api / rates["log"] >= GOAL_API,
        )
    )
    rows.append(_row("run.log / MLflow", api / mlflow, "x"))
    rows.append(_row("raw binary COPY (ceiling)", rates["raw COPY"], "points/s"))
    for name in ("log", "log_series"):
        rows.append(_row(f"{name} / raw COPY", rates[name] / rates["raw COPY"], "x"))
    return rows
