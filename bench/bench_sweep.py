"""Sweep throughput: trials per minute with one and with two `signdb sweep work` processes,
and the per-trial overhead of a worker (claiming, setup and recording: not training).

On a scratch database with the digits dataset. Each measurement is a fresh
sweep of short trials (``trials`` of them: logreg on digits 0 and 1, or an MLP on all
ten digits), worked by 1 or 2 worker processes with BLAS at one thread each.
Trials per minute count from the first trial's start to the last one's end,
as Optuna recorded them, so the workers' start-up (imports, the one read of
the dataset) is left out; it is reported on its own row. The overhead of a
trial is ``1 - training / trial`` seconds, both measured by the worker: the
trial from its look for a trial to telling Optuna, the training inside the
training loops. Figures are medians of ``REPEATS``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import text

from bench._progress import note
from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.loading import load_dataset
from signdb.sweeps import SweepRequest, create_sweep

DB = "signdb_bench_sweep"
REPEATS = 3
GOAL_SPEEDUP = 1.6
GOAL_OVERHEAD = 0.05
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
WORKLOADS = {
    # A logreg trial takes a tenth of a second: 48 of them make a span of seconds, in
    # which one worker starting a moment after the other no longer decides the speed-up.
    "logreg 0v1": dict(
        trials=48,
        model="logreg",
        classes=(0, 1),
        params=("lr=loguniform:0.003:0.03", "iterations=150"),
    ),
    "mlp 10 classes": dict(
        trials=12,
        model="mlp",
        classes=None,
        params=("lr=loguniform:0.0005:0.005", "hidden=[64]", "iterations=8", "batch_size=64"),
    ),
}


def _row(workload: str, metric: str, value: Any, unit: str, goal: str = "", ok: Any = None):
    return {
        "benchmark": "sweep",
        "workload": workload,
        "metric": metric,
        "value": value,
        "unit": unit,
        "goal": goal,
        "ok": ok,
    }


def _work(url: str, name: str, workers: int) -> tuple[float, list[dict[str, Any]]]:
    """Wall seconds of ``workers`` worker processes on sweep ``name``, and their trials."""
    env = {**os.environ, **ONE_THREAD, "SIGNDB_DATABASE_URL": url}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "signdb", "sweep", "work", name, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    trials = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"sweep worker failed: {err.strip()[-500:]}")
        trials += json.loads(out)["trials"]
    return time.perf_counter() - started, trials


def _span_minutes(engine, name: str) -> float:  # noqa: ANN001
    """Minutes from the first trial's start to the last trial's end (Optuna's clock)."""
    with engine.connect() as conn:
        seconds = conn.scalar(
            text(
                "SELECT extract(epoch FROM max(t.datetime_complete) - min(t.datetime_start)) "
                "FROM optuna.trials t JOIN optuna.studies s USING (study_id) "
                "WHERE s.study_name = :n"
            ),
            {"n": name},
        )
    return float(seconds) / 60


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with scratch_engine(DB) as engine:
        note("loading the dataset")
        load_dataset(engine, dataset_dir(), "digits", Preprocessing(), workers=2)
        url = engine.url.render_as_string(hide_password=False)
        for label, spec in WORKLOADS.items():
            rates: dict[int, list[float]] = {1: [], 2: []}
            walls: dict[int, list[float]] = {1: [], 2: []}
            overheads: list[float] = []
            trial_seconds: list[float] = []
            for repeat in range(REPEATS):
                for workers in (1, 2):
                    name = f"{label.split()[0]}-{workers}w-{repeat}"
                    request = SweepRequest(
                        name=name,
                        dataset="digits",
                        sampler="random",
                        seed=repeat,
                        prune=False,
                        **spec,
                    )
                    create_sweep(engine, request)
                    note(
                        f"{label}: {spec['trials']} trials, {workers} worker(s), repeat {repeat + 1}"
                    )
                    wall, trials = _work(url, name, workers)
                    assert len(trials) == spec["trials"], (
                        f"{len(trials)} trials ran, not {spec['trials']}"
                    )
                    minutes = _span_minutes(engine, name)
                    rates[workers].append(spec["trials"] / minutes)
                    walls[workers].append(wall - minutes * 60)
                    if workers == 1:
                        overheads += [1 - t["training_seconds"] / t["seconds"] for t in trials]
                        trial_seconds += [t["seconds"] for t in trials]
            one, two = (statistics.median(rates[w]) for w in (1, 2))
            speedup = statistics.median(b / a for a, b in zip(rates[1], rates[2], strict=True))
            overhead = statistics.median(overheads)
            rows += [
                _row(label, "trials/min, 1 worker", one, "trials/min"),
                _row(label, "trials/min, 2 workers", two, "trials/min"),
                _row(
                    label,
                    "2 workers / 1 worker",
                    speedup,
                    "x",
                    f">= {GOAL_SPEEDUP}",
                    speedup >= GOAL_SPEEDUP,
                ),
                _row(label, "median trial", statistics.median(trial_seconds), "s"),
                _row(
                    label,
                    "per-trial overhead (not training)",
                    overhead,
                    "share",
                    f"< {GOAL_OVERHEAD}" if label.startswith("mlp") else "",
                    overhead < GOAL_OVERHEAD if label.startswith("mlp") else None,
                ),
                _row(
                    label,
                    "worker start-up outside the trials",
                    statistics.median(walls[1]),
                    "s",
                ),
            ]
    return rows
