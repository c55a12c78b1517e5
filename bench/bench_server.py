"""signdb serve at scale: 10,000 runs and a 1,000,000-point metric, against MLflow's server.

A scratch database ``signdb_bench_server`` on the embedded server gets 10,000
synthetic runs (SQL) and one run whose metric ``cost`` has 1,000,000 points,
written through signdb's own logger (so its ``metric_buckets`` are what a real
run leaves). A real ``signdb serve`` process (uvicorn, one worker) answers on
loopback. Each route is asked REPEATS times after a warm-up; the server's own
time comes from its ``Server-Timing`` header, the client's from the round
trip. Then 16 concurrent clients read ``/api/v1/runs`` for LOAD_SECONDS.

MLflow: the same 10,000 runs (their model, learning rate and test accuracy) go
into MLflow's own schema in ``signdb_bench_server_mlflow`` (one run made by
MLflow's client, cloned by SQL), an ``mlflow server`` process serves them, and
``runs/search`` for the first 50 runs is timed as ``/api/v1/runs`` is.

Goals: listing < 50 ms at 10,000 runs; the downsampled history < 100 ms and
< 200 KB; no errors under load; >= 10x MLflow's runs/search.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np
import psycopg

from bench import _progress
from bench._scratch import libpq_conninfo, scratch_engine, scratch_url

SCRATCH = "signdb_bench_server"
MLFLOW_DB = "signdb_bench_server_mlflow"
RUNS = 10_000
POINTS = 1_000_000
REPEATS = 30
LOAD_SECONDS = 10.0
CLIENTS = 16
GOALS = {"listing_ms": 50.0, "history_ms": 100.0, "history_kb": 200.0, "vs_mlflow": 10.0}

SETUP = [
    "INSERT INTO signdb.datasets (name, preprocessing, height, width, channels) "
    """SELECT 'bench-' || d, '{"size": 64, "color": "gray", "resample": "lanczos"}', 64, 64, 1 """
    "FROM generate_series(1, 4) d",
    "INSERT INTO signdb.classes (dataset_id, label, name) "
    "SELECT d, l, 'class-' || l FROM generate_series(1, 4) d, generate_series(0, 9) l",
    "INSERT INTO signdb.runs (dataset_id, name, model, engine, classes, hyperparams, seed, "
    "test_fraction, status, started_at, finished_at, heartbeat_at, total_steps, steps_done, "
    "train_size, test_size, train_accuracy, test_accuracy, test_accuracy_low, "
    "test_accuracy_high, test_f1) "
    "SELECT 1 + mod(g, 4), 'run-' || g, (ARRAY['logreg', 'softmax', 'mlp', 'cnn'])[1 + mod(g, 4)], "
    "'numpy', '{0,1,2,3,4,5,6,7,8,9}', jsonb_build_object('lr', 0.001 * (mod(g, 10) + 1), "
    "'iterations', 150, 'hidden', jsonb_build_array(64 * (1 + mod(g, 3)))), g, 0.15, "
    "CASE WHEN mod(g, 50) = 0 THEN 'failed' ELSE 'succeeded' END, "
    "now() - (g || ' minutes')::interval, now() - (g || ' minutes')::interval + interval '90 s', "
    "now(), 150, 150, 1700, 300, 0.95, 0.80 + mod(g * 7, 200) / 1000.0, "
    "0.76 + mod(g * 7, 200) / 1000.0, 0.84 + mod(g * 7, 200) / 1000.0, "
    "0.79 + mod(g * 7, 200) / 1000.0 FROM generate_series(1, %(runs)s) g",
    "ANALYZE signdb.runs",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {proc.stderr.read()[-2000:]}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered at {url} within {seconds} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _build(engine) -> int:  # noqa: ANN001 - a signdb engine
    from signdb.tracking.logger import MetricLogger

    with psycopg.connect(libpq_conninfo(engine.url.render_as_string(hide_password=False)),
                         autocommit=True) as conn:  # fmt: skip
        for statement in SETUP:
            conn.execute(statement, {"runs": RUNS})
        (run_id,) = conn.execute("SELECT max(id) FROM signdb.runs").fetchone()
    steps = np.arange(POINTS)
    rng = np.random.default_rng(0)
    cost = np.exp(-steps / 2e5) + 0.05 * rng.standard_normal(POINTS)
    logger = MetricLogger(engine, run_id)
    logger.log_series("cost", steps, cost)
    logger.flush()
    return run_id


def _timed(client: httpx.Client, path: str, **kw: Any) -> dict[str, float]:
    """Median server and round-trip milliseconds, and the body's kilobytes."""
    client.get(path, **kw).raise_for_status()  # warm-up
    server, total, size = [], [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        response = client.get(path, **kw)
        total.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        timing = response.headers.get("server-timing", "")
        if timing.startswith("app;dur="):
            server.append(float(timing.removeprefix("app;dur=")))
        size = len(response.content)
    _progress.note(f"{path}: {REPEATS} requests")
    return {
        "server_ms": statistics.median(server) if server else None,
        "round_trip_ms": statistics.median(total),
        "kb": size / 1024,
    }


async def _load(base: str, path: str) -> dict[str, float]:
    """CLIENTS concurrent clients asking for ``path`` for LOAD_SECONDS."""
    ok = errors = 0
    latencies: list[float] = []
    stop_at = time.monotonic() + LOAD_SECONDS

    async def client() -> None:
        nonlocal ok, errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                try:
                    response = await http.get(path)
                    ok += response.status_code == 200
                    errors += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1
                latencies.append((time.perf_counter() - start) * 1000)

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests_per_second": ok / elapsed,
        "errors": errors,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


def _signdb_rows(url: str, run_id: int) -> tuple[list[dict[str, Any]], float]:
    _progress.note("starting signdb serve")
    port = _free_port()
    env = {**os.environ, "SIGNDB_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "signdb", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/api/v1/openapi.json", proc)
        rows = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for label, path, params, goal in [
                ("runs page (HTML), first page", "/", {}, "listing_ms"),
                ("/api/v1/runs, first page", "/api/v1/runs", {}, "listing_ms"),
                ("/api/v1/runs?model=mlp", "/api/v1/runs", {"model": "mlp"}, "listing_ms"),
                ("/api/v1/runs?sort=-test_accuracy", "/api/v1/runs",
                 {"sort": "-test_accuracy"}, "listing_ms"),
                ("/api/v1/runs?model=mlp&sort=-test_accuracy&param=lr=0.005", "/api/v1/runs",
                 {"model": "mlp", "sort": "-test_accuracy", "param": "lr=0.005"}, "listing_ms"),
                ("history of 1,000,000 points -> 2,000", f"/api/v1/runs/{run_id}/metrics/cost",
                 {"points": 2000}, "history_ms"),
            ]:  # fmt: skip
                headers = {"Accept": "text/html"} if path == "/" else {}
                timed = _timed(client, path, params=params, headers=headers)
                row = {"measure": label, **timed, "goal_ms": GOALS[goal]}
                row["meets_goal"] = timed["server_ms"] < GOALS[goal]
                if goal == "history_ms":
                    row["meets_goal"] = row["meets_goal"] and timed["kb"] < GOALS["history_kb"]
                rows.append(row)
            ours = rows[1]["round_trip_ms"]
        load = asyncio.run(_load(base, "/api/v1/runs"))
        rows.append({"measure": f"/api/v1/runs, {CLIENTS} concurrent clients, "
                     f"{LOAD_SECONDS:.0f} s", **load, "meets_goal": load["errors"] == 0})  # fmt: skip
        return rows, ours
    finally:
        _stop(proc)


def _fill_mlflow(url: str) -> str:
    """10,000 MLflow runs like ours: one made by MLflow's client, the rest cloned in SQL."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("bench_server")
    template = client.create_run(experiment).info.run_id
    from mlflow.entities import Metric, Param

    client.log_batch(
        template,
        metrics=[Metric("test_accuracy", 0.85, int(time.time() * 1000), 150)],
        params=[Param("model", "logreg"), Param("lr", "0.001")],
    )
    client.set_terminated(template)
    client._tracking_client.store.engine.dispose()
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        for table in ("runs", "params", "metrics", "latest_metrics", "tags"):
            columns = [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = 'public' ORDER BY ordinal_position", [table]).fetchall()]  # fmt: skip
            chosen = []
            for c in columns:
                if c == "run_uuid":
                    chosen.append("md5(g::text)")
                elif table == "runs" and c == "name":
                    chosen.append("'run-' || g")
                elif table == "runs" and c == "start_time":
                    chosen.append("start_time - g * 60000")
                elif table in ("metrics", "latest_metrics") and c == "value":
                    chosen.append("0.80 + mod(g * 7, 200) / 1000.0")
                elif table == "params" and c == "value":
                    chosen.append(
                        "CASE key WHEN 'model' THEN (ARRAY['logreg', 'softmax', 'mlp', 'cnn'])"
                        "[1 + mod(g, 4)] ELSE (0.001 * (mod(g, 10) + 1))::text END"
                    )
                else:
                    chosen.append(c)
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(chosen)} "  # noqa: S608 - bench-only, column names from the catalog
                f"FROM {table} CROSS JOIN generate_series(1, {RUNS - 1}) g "
                f"WHERE run_uuid = %s",
                [template],
            )
        conn.execute("ANALYZE")
    return experiment


def _mlflow_rows(url: str, ours_ms: float) -> list[dict[str, Any]]:
    _progress.note("filling MLflow's schema with the same runs")
    experiment = _fill_mlflow(url)
    _progress.note("starting mlflow server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         libpq_conninfo(url).replace("postgresql://", "postgresql+psycopg://"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/health", proc, seconds=180)
        body = {"experiment_ids": [experiment], "max_results": 50,
                "order_by": ["attributes.start_time DESC"]}  # fmt: skip
        with httpx.Client(base_url=base, timeout=60) as client:
            client.post("/api/2.0/mlflow/runs/search", json=body).raise_for_status()
            times = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                response = client.post("/api/2.0/mlflow/runs/search", json=body)
                times.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
                assert len(response.json()["runs"]) == 50
        theirs = statistics.median(times)
        return [
            {"measure": "MLflow runs/search, first 50 of 10,000", "round_trip_ms": theirs},
            {
                "measure": "signdb /api/v1/runs vs MLflow runs/search (round trip)",
                "speedup": theirs / ours_ms,
                "goal": GOALS["vs_mlflow"],
                "meets_goal": theirs / ours_ms >= GOALS["vs_mlflow"],
            },  # fmt: skip
        ]
    finally:
        _stop(proc)


def run() -> list[dict[str, Any]]:
    with scratch_engine(SCRATCH) as engine:
        _progress.note(f"{RUNS:,} runs and a {POINTS:,}-point metric")
        run_id = _build(engine)
        url = engine.url.render_as_string(hide_password=False)
        rows, ours = _signdb_rows(url, run_id)
    with scratch_url(MLFLOW_DB) as mlflow_url:
        rows += _mlflow_rows(mlflow_url, ours)
    return rows
