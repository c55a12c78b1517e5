"""Serving: onnxruntime in-process, the serving core, and (given a URL) `signdb serve` over HTTP.

On a scratch database ``signdb_bench_serving`` holding the shared dataset (64x64
gray, 10 classes), one epoch trains signdb's default ``cnn`` (torch engine) and
default ``mlp`` (numpy); the weights' values do not change the cost of a
forward pass, only the architecture does. For each model, at batch 1 and 64:

* ``onnxruntime``: the exported graph's session, called in-process on float32
  images (:class:`signdb.ml.onnx_runtime.OnnxClassifier`): the reference every
  other row is a ratio of; ``ort spinning``: the same with onnxruntime's default
  of worker threads that spin between runs, which signdb turns off;
* ``numpy`` / ``torch``: the model's own forward pass (``predict_proba_pixels``),
  the alternative to serving every run through onnxruntime;
* ``core``, ``core+log``: :func:`signdb.serving.infer` on the binary request
  Triton's client sends (the alias resolved in PostgreSQL on every call, the
  request parsed, the response encoded), without and with the prediction log
  (every image, written by its thread): the server minus HTTP; ``log cost,
  rounds`` is one minus their throughputs' ratio, per round, then the median.

Figures are medians over ``REPEATS`` rounds in which the variants take turns,
in reverse order every other round, so background load on the two shared cores
and the order itself hit them alike; latencies are the pooled p50 and p99 of
the calls. ``log record()`` and ``log write per row`` are the log's own costs
(the request thread's share, a median over thousands of calls, and the
writer's binary COPY per row, database included, a median of three flushes of
``LOG_ROWS`` rows), and ``log cost, accounted`` their sum
for one request as a share of a ``core`` request: the same cost as the rounds
measure, without their noise (two identical variants differ by up to 10% in a
round on these cores, more than the 5% to tell apart). Goal: under 5%.

HTTP rows (requests/s, p50/p99 at batch 1 and 64 with 1 and 8 clients, as a
ratio of in-process onnxruntime) run against two ``signdb serve`` processes the
benchmark starts on its scratch database, one with ``--log-predictions 1``; they
take turns with in-process onnxruntime, ``REPEATS`` rounds of ``HTTP_SECONDS``
each, and each ratio is the median of a round's. A logging server's round ends
when its rows are in the table, so its writes are charged to it.
Against ``SIGNDB_BENCH_SERVE_URL`` when set to a running ``signdb serve``
(``SIGNDB_BENCH_SERVE_MODELS``: its aliases of the CNN and the MLP, default
``cnn,mlp``; ``SIGNDB_BENCH_SERVE_TOKEN``: a viewer token;
``SIGNDB_BENCH_SERVE_URL_LOGGING``: the same server started with
``--log-predictions 1``). Goals:
>= 0.8x in-process onnxruntime throughput at batch 64; MLP p50 < 10 ms at batch 1;
the log costs under 5%.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import onnxruntime as ort
import psycopg
import tritonclient.http as triton

from bench._progress import note
from bench._scratch import libpq_conninfo, scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.loading import load_dataset
from signdb.ml.base import pixels_to_float
from signdb.ml.onnx_runtime import OnnxClassifier
from signdb.serving import PredictionLog, infer, resolve_model, run_model, set_alias
from signdb.serving.models import LoadedModel, ServedModel
from signdb.training import TrainerSettings, TrainSpec, load_model, train

DB = "signdb_bench_serving"
DATASET = "sld"
MODELS = {"cnn": ("cnn", "torch"), "mlp": ("mlp", "numpy")}
BATCHES = (1, 64)
REPEATS = 8
SECONDS = 0.6  # per variant and round
CLIENTS = (1, 8)
HTTP_SECONDS = 1.0  # per server and round
LOG_ROWS = 20_000  # rows each of the three log accountings writes
GOAL_LOG_COST = 0.05
GOAL_HTTP_RATIO = 0.8
GOAL_MLP_P50_MS = 10.0


def timed(
    fn: Callable[[], Any], seconds: float, after: Callable[[], Any] | None = None
) -> tuple[float, list[float]]:
    """(calls per second, each call's latency in ms) of ``fn`` called for ``seconds``.

    ``after`` runs inside the timed span: the prediction log's flush, so the
    writing its calls caused is charged to them and not to the next variant.
    """
    fn()  # warm: the first call pays for allocations
    latencies = []
    started = time.perf_counter()
    while (now := time.perf_counter()) - started < seconds:
        fn()
        latencies.append((time.perf_counter() - now) * 1000)
    if after is not None:
        after()
    return len(latencies) / (time.perf_counter() - started), latencies


def summarize(
    model: str, batch: int, variant: str, rates: list[float], lat: list[float], base: float | None
) -> dict[str, Any]:
    rate = statistics.median(rates)
    return {
        "model": model,
        "batch": batch,
        "path": variant,
        "requests_s": round(rate, 1),
        "images_s": round(rate * batch, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "x_onnxruntime": None if base is None else round(rate / base, 3),
    }


def _train(engine, key: str) -> int:
    model, engine_name = MODELS[key]
    spec = TrainSpec(
        dataset=DATASET,
        model=model,
        engine=engine_name,
        classes=None,
        hyperparams={"iterations": 1},
        trainer=TrainerSettings(device="cpu"),
    )
    return train(engine, spec).run_id


def _binary_request(pixels: np.ndarray) -> tuple[bytes, int]:
    tensor = triton.InferInput("images", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    return triton.InferenceServerClient.generate_request_body([tensor])


def in_process(engine, key: str, run_id: int, log: PredictionLog) -> list[dict[str, Any]]:
    set_alias(engine, key, run_id, "bench")
    served = resolve_model(engine, key)
    runner: OnnxClassifier = served.loaded.classifier
    _, native = load_model(engine, run_id)
    graph = run_model(engine, run_id).onnx
    native_name = MODELS[key][1]
    rng = np.random.default_rng(0)
    rows = []
    for batch in BATCHES:
        pixels = rng.integers(0, 256, (batch, *served.loaded.shape), dtype=np.uint8)
        images = pixels_to_float(pixels)
        body, header = _binary_request(pixels)
        spinning = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        variants = {
            "onnxruntime": lambda images=images: runner.run(images),
            "ort spinning": lambda images=images, s=spinning: s.run(None, {"images": images}),
            native_name: lambda pixels=pixels: native.predict_proba_pixels(pixels),
            "core": lambda body=body, header=header: infer(engine, key, body, header),
            "core+log": lambda body=body, header=header: infer(engine, key, body, header, log=log),
        }
        rates: dict[str, list[float]] = {v: [] for v in variants}
        lats: dict[str, list[float]] = {v: [] for v in variants}
        log.flush()
        order = list(variants)
        for r in range(REPEATS):
            for variant in order if r % 2 == 0 else order[::-1]:
                fn = variants[variant]
                note(f"{key} batch {batch}: {variant}, round {r + 1}/{REPEATS}")
                flush = log.flush if variant == "core+log" else None
                rate, lat = timed(fn, SECONDS, after=flush)
                rates[variant].append(rate)
                lats[variant] += lat
        base = statistics.median(rates["onnxruntime"])
        rows += [summarize(key, batch, v, rates[v], lats[v], base) for v in variants]
        # Per round, then the median: the two ran seconds apart, under the same load.
        cost = statistics.median(
            1 - with_log / without
            for with_log, without in zip(rates["core+log"], rates["core"], strict=True)
        )
        core_s = 1 / statistics.median(rates["core"])
        rows += log_accounting(engine, key, batch, served, core_s)
        rows.append(
            {"model": key, "batch": batch, "path": "log cost, rounds", "value": round(cost, 4)}
        )
    return rows


def log_accounting(
    engine, key: str, batch: int, served: ServedModel, request_s: float
) -> list[dict[str, Any]]:
    """The prediction log's own costs for requests of ``batch`` images: ``record()`` on the
    request's thread, and the writer's COPY per row; their sum for one request as a share
    of ``request_s``, the seconds a ``core`` request takes."""
    labels = served.loaded.labels
    proba = np.full((batch, len(labels)), 1 / len(labels), np.float32)
    predicted = np.full(batch, labels[0])
    calls = max(200, LOG_ROWS // batch)
    record: list[float] = []
    write: list[float] = []
    for _ in range(3):
        log = PredictionLog(engine, 1.0, interval=3600.0, batch_rows=10**9)  # writes on flush()
        try:
            for _ in range(calls):
                started = time.perf_counter()
                log.record(key, served.run_id, proba, predicted, 1.0, classes=labels)
                record.append(time.perf_counter() - started)
            started = time.perf_counter()
            log.flush(60)
            write.append((time.perf_counter() - started) / (calls * batch))
        finally:
            log.close()
    record_s, write_s = statistics.median(record), statistics.median(write)
    share = (record_s + batch * write_s) / request_s
    common = {"model": key, "batch": batch}
    return [
        {
            **common,
            "path": "log record() per request",
            "value": round(record_s * 1e6, 2),
            "unit": "us",
        },
        {**common, "path": "log write per row", "value": round(write_s * 1e6, 2), "unit": "us"},
        {
            **common,
            "path": "log cost, accounted",
            "value": round(share, 4),
            "goal": f"< {GOAL_LOG_COST}",
            "ok": share < GOAL_LOG_COST,
        },
    ]


# -- over HTTP, against a running `signdb serve` -------------------------------------------
@dataclass(frozen=True)
class Server:
    """A ``signdb serve`` to load: its base URL, whether it logs predictions, and
    whether it serves the benchmark's own database."""

    url: str
    logging: bool
    local: bool = False


def http_rows(
    servers: list[Server],
    models: dict[str, str],
    loaded: dict[str, LoadedModel],
    database_url: str,
) -> list[dict[str, Any]]:
    """Requests/s and p50/p99 of binary /v2 infer requests from 1 and 8 keep-alive clients.

    Each round times the same images through the ``loaded`` model's onnxruntime
    session in-process (the reference), then through each server in turn, so a
    ratio compares figures taken seconds apart.
    """
    token = os.environ.get("SIGNDB_BENCH_SERVE_TOKEN")
    watch = LogWatch(database_url)
    rows = []
    try:
        for key, alias in models.items():
            model = loaded[key]
            for batch in BATCHES:
                rng = np.random.default_rng(1)
                pixels = rng.integers(0, 256, (batch, *model.shape), np.uint8)
                reference_call = partial(model.classifier.run, pixels_to_float(pixels))
                body, header = _binary_request(pixels)
                for server in servers:  # the model loads
                    _http_load(server.url, alias, body, header, 1, token, seconds=0.2)
                for clients in CLIENTS:
                    reference: list[float] = []
                    rates: dict[Server, list[float]] = {s: [] for s in servers}
                    lats: dict[Server, list[float]] = {s: [] for s in servers}
                    for r in range(REPEATS):
                        note(
                            f"http {key} batch {batch}, {clients} clients, round {r + 1}/{REPEATS}"
                        )
                        reference.append(timed(reference_call, HTTP_SECONDS)[0])
                        for server in servers:
                            since = time.time()
                            rate, lat = _http_load(
                                server.url, alias, body, header, clients, token, HTTP_SECONDS
                            )
                            if server.logging and server.local:
                                watch.wait(since, len(lat) * batch)
                            rates[server].append(rate)
                            lats[server] += lat
                    for server in servers:
                        row = _http_row(key, batch, clients, server, rates, lats, reference)
                        rows.append(row)
    finally:
        watch.close()
    return rows


def _http_row(key, batch, clients, server, rates, lats, reference) -> dict[str, Any]:  # noqa: ANN001
    row = summarize(key, batch, f"http {clients}c", rates[server], lats[server], None)
    row["logging"] = server.logging
    ratio = statistics.median(a / b for a, b in zip(rates[server], reference, strict=True))
    row["x_onnxruntime"] = round(ratio, 3)
    row["onnxruntime_requests_s"] = round(statistics.median(reference), 1)
    if batch == 64:
        row["goal"], row["ok"] = f">= {GOAL_HTTP_RATIO}x", ratio >= GOAL_HTTP_RATIO
    if key == "mlp" and batch == 1:
        row["goal"], row["ok"] = f"p50 < {GOAL_MLP_P50_MS} ms", row["p50_ms"] < GOAL_MLP_P50_MS
    return row


class LogWatch:
    """Waits until the prediction log of a server here has written a round's rows, so
    its writes land in its own round and not in the next server's."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq_conninfo(url), autocommit=True)

    def wait(self, since: float, rows: int, timeout: float = 30.0) -> None:
        """Until ``rows`` served predictions from ``since`` (Unix time) on are in the table."""
        deadline = time.monotonic() + timeout
        query = "SELECT count(*) FROM signdb.served_predictions WHERE served_at >= to_timestamp(%s)"
        while self.conn.execute(query, (since,)).fetchone()[0] < rows:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the prediction log did not write {rows} rows in {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        self.conn.close()


def _http_load(
    url: str,
    alias: str,
    body: bytes,
    header: int,
    clients: int,
    token: str | None,
    seconds: float,
) -> tuple[float, list[float]]:
    parts = urlsplit(url)
    path = f"{parts.path.rstrip('/')}/v2/models/{alias}/infer"
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(header),
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        mine = []
        while (start := time.perf_counter()) < deadline:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}{path} answered {response.status}")
            mine.append((time.perf_counter() - start) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - started), latencies


@contextmanager
def serving(url: str, *args: str) -> Iterator[Server]:
    """A ``signdb serve`` process on ``url``'s database (loopback, open)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "signdb", "serve", "--port", str(port), *args],
        env={**os.environ, "SIGNDB_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/v2/health/live")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("signdb serve did not answer") from None
                time.sleep(0.2)
        yield Server(base, logging="--log-predictions" in args, local=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"path": "load average at start", "value": os.getloadavg()[0]}]
    loaded: dict[str, LoadedModel] = {}
    with scratch_engine(DB) as engine:
        note("loading the shared dataset (64x64 gray)")
        load_dataset(engine, dataset_dir(), DATASET, Preprocessing(), workers=2)
        log = PredictionLog(engine, 1.0)
        try:
            for key in MODELS:
                note(f"training one epoch of the default {key}")
                run_id = _train(engine, key)
                found = in_process(engine, key, run_id, log)
                rows += found
                loaded[key] = resolve_model(engine, key).loaded
        finally:
            log.close()
            rows.append({"path": "log rows written", "value": log.written})
        names = os.environ.get("SIGNDB_BENCH_SERVE_MODELS", "cnn,mlp").split(",")
        models = dict(zip(MODELS, names, strict=True))
        database = engine.url.render_as_string(hide_password=False)
        if url := os.environ.get("SIGNDB_BENCH_SERVE_URL"):
            servers = [Server(url, logging=False)]
            if logged := os.environ.get("SIGNDB_BENCH_SERVE_URL_LOGGING"):
                servers.append(Server(logged, logging=True))
            rows += http_rows(servers, models, loaded, database)
        else:  # our own servers on the scratch database, without and with the log
            with serving(database) as off, serving(database, "--log-predictions", "1") as on:
                rows += http_rows([off, on], models, loaded, database)
        rows.append({"path": "load average at end", "value": os.getloadavg()[0]})
    return rows
