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
  (every image, written by its thread): the server minus HTTP. Goal: logging
  costs under 5%.

Figures are medians over ``REPEATS`` rounds in which the variants alternate, so
background load on the two shared cores hits them alike; latencies are the
pooled p50 and p99 of the calls.

HTTP rows (requests/s, p50/p99 at batch 1 and 64 with 1 and 8 clients, as a
ratio of in-process onnxruntime) run against two ``signdb serve`` processes the
benchmark starts on its scratch database (without, then with
``--log-predictions 1``), or against ``SIGNDB_BENCH_SERVE_URL`` when set to a
running ``signdb serve`` (``SIGNDB_BENCH_SERVE_MODELS``: its aliases of the CNN
and the MLP, default ``cnn,mlp``; ``SIGNDB_BENCH_SERVE_TOKEN``: a viewer token;
``SIGNDB_BENCH_SERVE_URL_LOGGING``: the same server started with
``--log-predictions 1``, for the logging-on rows). Goals: >= 0.8x in-process
onnxruntime throughput at batch 64; MLP p50 < 10 ms at batch 1.
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
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import onnxruntime as ort
import tritonclient.http as triton

from bench._progress import note
from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.loading import load_dataset
from signdb.ml.base import pixels_to_float
from signdb.ml.onnx_runtime import OnnxClassifier
from signdb.serving import PredictionLog, infer, resolve_model, run_model, set_alias
from signdb.training import TrainerSettings, TrainSpec, load_model, train

DB = "signdb_bench_serving"
DATASET = "sld"
MODELS = {"cnn": ("cnn", "torch"), "mlp": ("mlp", "numpy")}
BATCHES = (1, 64)
REPEATS = 5
SECONDS = 0.6  # per variant and round
CLIENTS = (1, 8)
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
        for r in range(REPEATS):
            for variant, fn in variants.items():
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
        rows.append(
            {
                "model": key,
                "batch": batch,
                "path": "log cost",
                "value": round(cost, 4),
                "goal": f"< {GOAL_LOG_COST}",
                "ok": cost < GOAL_LOG_COST,
            }
        )
    return rows


# -- over HTTP, against a running `signdb serve` -------------------------------------------
def http_rows(url: str, models: dict[str, str], base: dict, logging: bool) -> list[dict[str, Any]]:
    """Requests/s and p50/p99 of binary /v2 infer requests from 1 and 8 keep-alive clients."""
    token = os.environ.get("SIGNDB_BENCH_SERVE_TOKEN")
    rows = []
    for key, alias in models.items():
        for batch in BATCHES:
            shape = base[(key, "shape")]
            pixels = np.random.default_rng(1).integers(0, 256, (batch, *shape), dtype=np.uint8)
            body, header = _binary_request(pixels)
            _http_load(url, alias, body, header, 1, token, seconds=0.2)  # the model loads
            for clients in CLIENTS:
                note(f"http {key} batch {batch}, {clients} clients, logging {logging}")
                rate, lat = _http_load(url, alias, body, header, clients, token)
                ratio = rate / base[(key, batch)]
                row = summarize(key, batch, f"http {clients}c", [rate], lat, base[(key, batch)])
                row["logging"] = logging
                row["x_onnxruntime"] = round(ratio, 3)
                if batch == 64:
                    row["goal"], row["ok"] = f">= {GOAL_HTTP_RATIO}x", ratio >= GOAL_HTTP_RATIO
                if key == "mlp" and batch == 1:
                    row["goal"], row["ok"] = f"p50 < {GOAL_MLP_P50_MS} ms", row["p50_ms"] < 10
                rows.append(row)
    return rows


def _http_load(
    url: str,
    alias: str,
    body: bytes,
    header: int,
    clients: int,
    token: str | None,
    seconds: float = REPEATS * SECONDS,
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
def serving(url: str, *args: str) -> Iterator[str]:
    """A ``signdb serve`` process on ``url``'s database (loopback, open), its base URL."""
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
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"path": "load average at start", "value": os.getloadavg()[0]}]
    base: dict = {}
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
                base[(key, "shape")] = resolve_model(engine, key).loaded.shape
                for r in found:
                    if r["path"] == "onnxruntime":
                        base[(key, r["batch"])] = r["requests_s"]
        finally:
            log.close()
            rows.append({"path": "log rows written", "value": log.written})
        names = os.environ.get("SIGNDB_BENCH_SERVE_MODELS", "cnn,mlp").split(",")
        models = dict(zip(MODELS, names, strict=True))
        if url := os.environ.get("SIGNDB_BENCH_SERVE_URL"):
            rows += http_rows(url, models, base, logging=False)
            if logged := os.environ.get("SIGNDB_BENCH_SERVE_URL_LOGGING"):
                rows += http_rows(logged, models, base, logging=True)
        else:  # our own servers on the scratch database, without and with the log
            database = engine.url.render_as_string(hide_password=False)
            with serving(database) as url:
                rows += http_rows(url, models, base, logging=False)
            with serving(database, "--log-predictions", "1") as url:
                rows += http_rows(url, models, base, logging=True)
        rows.append({"path": "load average at end", "value": os.getloadavg()[0]})
    return rows
