"""Run queue: submit-to-running latency, throughput of trivial runs, CPU-bound speed-up.

On a scratch database with digits 0 and 1 of the shared dataset, `signdb worker`
processes with BLAS at one thread each:

* latency: with one idle worker, ``LATENCY_RUNS`` runs submitted one at a time
  (each waits for the last to finish); the time from the submit's commit
  (``runs.created_at``) to the run's status ``running`` (``runs.started_at``,
  set by the trainer), both on the database's clock. Median and p95;
* throughput: ``TRIVIAL_RUNS`` one-iteration logistic regressions, all
  submitted first, drained by 1 and by 2 workers; runs per second over the
  span from the first job's start to the last run's end;
* speed-up and overhead: ``CPU_RUNS`` CPU-bound logistic regressions (about
  ``CPU_RUN_SECONDS`` each) drained by 1 and by 2 workers. The overhead is
  what a job costs beyond its run's own training time: from procrastinate's
  ``started`` event (the fetch) to its ``succeeded`` event, less the run's
  ``finished_at - started_at``, as a share of that training time. The 1- and
  2-worker batches alternate ``CPU_REPEATS`` times; the speed-up is the median
  of the repeats' ratios. Everything runs on the same 2-core machine as the
  workers' database, so its load (printed with the results) bounds the speed-up.
"""

from __future__ import annotations

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
from signdb.queue import submit
from signdb.training import TrainerSettings, TrainSpec

DB = "signdb_bench_queue"
LATENCY_RUNS = int(os.environ.get("BENCH_QUEUE_LATENCY_RUNS", 20))
TRIVIAL_RUNS = int(os.environ.get("BENCH_QUEUE_TRIVIAL_RUNS", 500))
CPU_RUNS = int(os.environ.get("BENCH_QUEUE_CPU_RUNS", 8))
CPU_REPEATS = int(os.environ.get("BENCH_QUEUE_CPU_REPEATS", 2))
CPU_RUN_SECONDS = float(os.environ.get("BENCH_QUEUE_CPU_SECONDS", 10.0))
GOAL_LATENCY = 1.0
GOAL_OVERHEAD = 0.03
GOAL_SPEEDUP = 1.7
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _row(workload: str, metric: str, value: Any, unit: str, goal: str = "", ok: Any = None):
    return {
        "benchmark": "queue",
        "workload": workload,
        "metric": metric,
        "value": value,
        "unit": unit,
        "goal": goal,
        "ok": ok,
    }


def _spec(iterations: int, seed: int = 42) -> TrainSpec:
    # eval_every at the end only: the held-out pass is not what a queue benchmark measures.
    return TrainSpec(
        dataset="digits",
        hyperparams={"iterations": iterations},
        seed=seed,
        trainer=TrainerSettings(eval_every=max(iterations, 1), cache="on"),
    )


def _workers(url: str, n: int, *args: str) -> list[subprocess.Popen]:
    env = {**os.environ, **ENV, "SIGNDB_DATABASE_URL": url}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "signdb", "worker", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]


def _drain(url: str, workers: int) -> None:
    procs = _workers(url, workers, "--until-empty")
    for proc in procs:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed: {err.strip()[-800:]}")


def _scalar(engine, sql: str, params: dict | None = None) -> Any:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(text(sql), params or {}).scalar()


def _latency(engine, url: str) -> list[float]:  # noqa: ANN001
    (worker,) = _workers(url, 1)
    try:
        deadline = time.monotonic() + 60
        while not _scalar(engine, "SELECT count(*) FROM procrastinate.procrastinate_workers"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the worker did not register")
            time.sleep(0.1)
        time.sleep(2.0)  # its fork server up and idle
        latencies = []
        for i in range(LATENCY_RUNS):
            run_id = submit(engine, _spec(5, seed=i))
            while (
                _scalar(engine, "SELECT status FROM signdb.runs WHERE id = :r", {"r": run_id})
                != "succeeded"
            ):
                time.sleep(0.05)
            latencies.append(
                _scalar(
                    engine,
                    "SELECT extract(epoch FROM started_at - created_at) FROM signdb.runs "
                    "WHERE id = :r",
                    {"r": run_id},
                )
            )
            time.sleep(0.2)
        return [float(v) for v in latencies]
    finally:
        worker.terminate()
        worker.wait(60)


def _batch(engine, url: str, runs: int, iterations: int, workers: int) -> dict[str, float]:  # noqa: ANN001
    """Submit ``runs`` runs, drain them with ``workers`` workers; span and per-job figures."""
    first = _scalar(engine, "SELECT coalesce(max(id), 0) FROM signdb.runs")
    started = time.perf_counter()
    for i in range(runs):
        submit(engine, _spec(iterations, seed=i))
    submit_seconds = time.perf_counter() - started
    _drain(url, workers)
    with engine.connect() as conn:
        span, done = conn.execute(
            text(
                "SELECT extract(epoch FROM max(r.finished_at) - min(e.at)), "
                "count(*) FILTER (WHERE r.status = 'succeeded') "
                "FROM signdb.runs r JOIN procrastinate.procrastinate_events e "
                "ON e.job_id = r.job_id AND e.type = 'started' WHERE r.id > :f"
            ),
            {"f": first},
        ).one()
        jobs = conn.execute(
            text(
                "SELECT extract(epoch FROM r.finished_at - r.started_at), "
                "extract(epoch FROM f.at - s.at) FROM signdb.runs r "
                "JOIN procrastinate.procrastinate_events s ON s.job_id = r.job_id "
                "AND s.type = 'started' JOIN procrastinate.procrastinate_events f "
                "ON f.job_id = r.job_id AND f.type = 'succeeded' WHERE r.id > :f"
            ),
            {"f": first},
        ).all()
    if done != runs:
        raise RuntimeError(f"{done} of {runs} runs succeeded")
    training = [float(t) for t, _ in jobs]
    overhead = [(float(j) - float(t)) / float(t) for t, j in jobs]
    return {
        "span": float(span),
        "submit_per_second": runs / submit_seconds,
        "run_seconds": statistics.median(training),
        "overhead": statistics.median(overhead),
        "overhead_seconds": statistics.median(float(j) - float(t) for t, j in jobs),
    }


def _iterations_for(engine, url: str, seconds: float) -> int:  # noqa: ANN001
    """Logistic-regression steps on digits 0 and 1 that take about ``seconds`` on a worker."""
    probe = 3000
    took = _batch(engine, url, 1, probe, 1)["run_seconds"]
    return max(probe, int(probe * seconds / took))


def _burn(steps: int) -> float:
    """A logistic regression's arithmetic, no database: what one CPU-bound run costs the CPU."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    X = rng.random((350, 4096), dtype=np.float32)
    y = (rng.random(350) > 0.5).astype(np.float32)
    w = np.zeros(4096, np.float32)
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(X @ w)))
            w -= 0.01 * (X.T @ (p - y)) / len(y)
    return time.perf_counter() - started


def _machine_speedup(steps: int = 15_000, repeats: int = 2) -> float:
    """The machine's own 2-process speed-up on the same arithmetic, without the queue: on a
    shared 2-core machine it is the ceiling of the workers' speed-up."""
    import multiprocessing

    ratios = []
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [10, 10])  # both processes up before timing
        for _ in range(repeats):
            started = time.perf_counter()
            pool.apply(_burn, (2 * steps,))
            one = time.perf_counter() - started
            started = time.perf_counter()
            pool.map(_burn, [steps, steps])
            ratios.append(one / (time.perf_counter() - started))
    return statistics.median(ratios)


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with scratch_engine(DB) as engine:
        note("loading the dataset")
        load_dataset(engine, dataset_dir(), "digits", Preprocessing(), workers=2)
        url = engine.url.render_as_string(hide_password=False)

        note(f"latency: {LATENCY_RUNS} runs, one idle worker")
        latencies = sorted(_latency(engine, url))
        median = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        rows += [
            _row("idle worker", "submit -> running, median", median, "s", f"< {GOAL_LATENCY}",
                 median < GOAL_LATENCY),
            _row("idle worker", "submit -> running, p95", p95, "s"),
        ]  # fmt: skip

        for workers in (1, 2):
            note(f"throughput: {TRIVIAL_RUNS} one-step runs, {workers} worker(s)")
            batch = _batch(engine, url, TRIVIAL_RUNS, 1, workers)
            rows += [
                _row(f"{TRIVIAL_RUNS} trivial runs", f"runs/s, {workers} worker(s)",
                     TRIVIAL_RUNS / batch["span"], "runs/s"),
                _row(f"{TRIVIAL_RUNS} trivial runs", f"queue cost per job, {workers} worker(s)",
                     batch["overhead_seconds"], "s"),
            ]  # fmt: skip
            if workers == 1:
                rows.append(
                    _row("submit", "runs submitted per second (one client)",
                         batch["submit_per_second"], "runs/s")
                )  # fmt: skip

        iterations = _iterations_for(engine, url, CPU_RUN_SECONDS)
        label = f"{CPU_RUNS} CPU-bound runs"
        spans: dict[int, list[float]] = {1: [], 2: []}
        runs, overheads = [], []
        # Interleaved repeats: on a shared machine the load drifts within minutes.
        for repeat in range(CPU_REPEATS):
            for workers in (1, 2):
                note(
                    f"CPU-bound: {CPU_RUNS} runs of {iterations} steps, {workers} worker(s), "
                    f"repeat {repeat + 1}"
                )
                batch = _batch(engine, url, CPU_RUNS, iterations, workers)
                spans[workers].append(batch["span"])
                if workers == 1:
                    runs.append(batch["run_seconds"])
                    overheads.append(batch["overhead"])
        note("the machine's own 2-process speed-up, no queue")
        ceiling = _machine_speedup()
        overhead = statistics.median(overheads)
        speedup = statistics.median(a / b for a, b in zip(spans[1], spans[2], strict=True))
        rows += [
            _row(label, "span, 1 worker", statistics.median(spans[1]), "s"),
            _row(label, "span, 2 workers", statistics.median(spans[2]), "s"),
            _row(label, "median run (training)", statistics.median(runs), "s"),
            _row(label, "queue overhead per run", overhead, "share", f"< {GOAL_OVERHEAD}",
                 overhead < GOAL_OVERHEAD),
            _row(label, "2 workers / 1 worker", speedup, "x", f">= {GOAL_SPEEDUP}",
                 speedup >= GOAL_SPEEDUP),
            _row("no queue", "2 processes / 1 process (the machine's ceiling)", ceiling, "x"),
        ]  # fmt: skip
    return rows
