"""Training throughput from PostgreSQL against in-memory numpy, logging overhead, peak memory.

Everything runs in one go against a scratch database ``signdb_bench_train`` on
the server signdb would use (the embedded one by default), dropped at the end.

* Throughput: the paper's experiment (logreg, digits 0 vs 1, 150 full-batch steps)
  and one MLP epoch (10 classes, batch 64). The same ``model.train_step`` is fed
  by ``RunData.batches`` with ``cache`` off and on, and by slices of a
  float32 array already in memory, over the same batches in the same order.
  Cache-on MLP figures are for a warm cache (every epoch after the first);
  the one-off cache load is reported on its own row.
* Wall time of ``train()`` end to end (run row, split, steps, metrics,
  evaluation, checkpoints), and the cost of one MLP checkpoint write.
* Logging overhead of the paper's experiment: time spent inside ``MetricLogger``
  over the rest of ``train()``, cross-checked against runs whose ``log`` is a
  no-op.
* Peak RSS of a child process that trains one MLP epoch with ``--cache off``
  on the dataset and on a 10x copy of it (``np.roll`` shifts 1..9 pixels).

Runs alternate between variants, so background load hits them alike; figures
are medians of ``REPEATS``. BLAS is pinned to one thread: on two shared cores,
OpenBLAS's spinning worker threads otherwise make a matrix product vary by 50x
with the load of other processes, drowning the data path being measured.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Engine, text
from threadpoolctl import threadpool_limits

from bench._data import enlarge, row
from bench._progress import note
from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import transaction
from signdb.loading import load_dataset
from signdb.ml import build_model
from signdb.ml.base import Classifier, pixels_to_float
from signdb.store import weights as weight_store
from signdb.tracking import MetricLogger, RunData, order_key
from signdb.training import CHECKPOINT_SECONDS, TrainerSettings, TrainSpec, train

DB = "signdb_bench_train"
DATASET = "sld"
BIG = "sld10"  # the dataset plus 9 shifted copies
SEED = 42
BATCH = 64
REPEATS = 3
OVERHEAD_REPEATS = 5
GOAL_RATIO = 0.8
GOAL_OVERHEAD = 0.05
GOAL_MEMORY_GROWTH = 1.25  # peak RSS at 10x over peak RSS at 1x
#: Default MLP: 30 epochs with a checkpoint every total//10 steps, i.e. 10 of them.
DEFAULT_MLP_EPOCHS, DEFAULT_CHECKPOINTS = 30, 10
NO_CHECKPOINTS = 10**9  # checkpoint_every that leaves only the final one
PREP = Preprocessing()  # the defaults: 64x64 gray


def _seed_config(cache: str) -> TrainSpec:
    # The defaults are the paper's experiment.
    return TrainSpec(dataset=DATASET, trainer=TrainerSettings(cache=cache))


def _mlp_fields(dataset: str, cache: str) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "model": "mlp",
        "classes": None,
        "hyperparams": {"iterations": 1, "batch_size": BATCH},
        # Checkpoints are measured on their own row.
        "trainer": {"cache": cache, "checkpoint_every": NO_CHECKPOINTS},
    }


def _mlp_config(dataset: str, cache: str) -> TrainSpec:
    fields = _mlp_fields(dataset, cache)
    return TrainSpec(**{**fields, "trainer": TrainerSettings(**fields["trainer"])})


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


# -- the training loops compared ------------------------------------------------------
class Workload:
    """One training job: its run's train split in memory, and the model that trains on it."""

    def __init__(self, engine: Engine, run_id: int, model: str, hyperparams: dict) -> None:
        self.engine, self.run_id = engine, run_id
        self.model_name, self.hyperparams = model, hyperparams
        with transaction(engine) as session:
            rows = session.execute(
                text(
                    "SELECT i.pixels, i.label, i.sha256 FROM signdb.run_images ri "
                    "JOIN signdb.images i ON i.id = ri.image_id "
                    "WHERE ri.run_id = :r AND ri.split = 'train' ORDER BY i.id"
                ),
                {"r": run_id},
            ).all()
            self.classes = session.scalar(
                text("SELECT classes FROM signdb.runs WHERE id = :r"), {"r": run_id}
            )
        self.shape = PREP.shape
        self.batch_size = None if self.new_model().full_batch else hyperparams["batch_size"]
        self.epochs = hyperparams["iterations"]
        pixels = np.frombuffer(b"".join(r[0] for r in rows), np.uint8)
        self.X = pixels_to_float(pixels.reshape(len(rows), *self.shape))
        self.y = np.searchsorted(self.classes, [r[1] for r in rows])
        self.shas = [r[2] for r in rows]
        self.n = len(rows)

    def new_model(self) -> Classifier:
        model = build_model(self.model_name, seed=SEED, **self.hyperparams)
        return model.initialize(PREP.shape, self.classes)

    def memory_batches(self, epoch: int) -> Iterator[np.ndarray | slice]:
        """Index arrays in the trainer's order (md5 of sha256, seed and epoch)."""
        if self.batch_size is None:
            yield slice(None)
            return
        order = np.asarray(
            sorted(range(self.n), key=lambda i: (order_key(self.shas[i], SEED, epoch), i))
        )
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size]

    def train_memory(self) -> tuple[float, int, int]:
        """(seconds, samples, largest batch) training on the in-memory array."""
        model = self.new_model()
        plans = [list(self.memory_batches(e)) for e in range(self.epochs)]  # not timed
        step = samples = 0
        start = time.perf_counter()
        for plan in plans:
            for idx in plan:
                X, y = self.X[idx], self.y[idx]
                model.train_step(X, y, step)
                step += 1
                samples += len(y)
        return time.perf_counter() - start, samples, len(self.y[plans[0][0]])

    def train_db(self, cache: str, *, warm: bool = False) -> tuple[float, int, int]:
        """(seconds, samples, largest batch) training on RunData batches from PostgreSQL."""
        model = self.new_model()
        data = RunData(self.engine, self.run_id, self.shape, self.classes, SEED, cache)
        if warm:
            for _ in data.batches("train", self.batch_size, epoch=0):
                pass
        step = samples = largest = 0
        start = time.perf_counter()
        for epoch in range(self.epochs):
            for X, y in data.batches("train", self.batch_size, epoch=epoch):
                model.train_step(X, y, step)
                step += 1
                samples += len(y)
                largest = max(largest, len(y))
        return time.perf_counter() - start, samples, largest


def _throughput_rows(name: str, work: Workload, warm_cache: bool) -> list[dict]:
    times: dict[str, list[float]] = {"memory": [], "off": [], "on": []}
    largest: dict[str, int] = {}
    samples: dict[str, int] = {}
    for _ in range(REPEATS):
        for variant in times:
            if variant == "memory":
                t, s, big = work.train_memory()
            else:
                t, s, big = work.train_db(variant, warm=warm_cache and variant == "on")
            times[variant].append(t)
            samples[variant], largest[variant] = s, big
    rate = {v: samples[v] / statistics.median(ts) for v, ts in times.items()}
    expected = work.n * work.epochs
    rows = [row(name, "in-memory numpy", rate["memory"], "samples/s")]
    for cache in ("off", "on"):
        label = f"cache {cache}" + (" (warm)" if cache == "on" and warm_cache else "")
        ratio = rate[cache] / rate["memory"]
        rows.append(row(name, f"PostgreSQL, {label}", rate[cache], "samples/s"))
        goal, ok = (
            (f">= {GOAL_RATIO}x in-memory", ratio >= GOAL_RATIO) if cache == "on" else ("", None)
        )
        rows.append(row(name, f"{label} / in-memory", ratio, "x", goal, ok))
    if work.batch_size is not None:
        # The streamed epoch must be the same mini-batches, not one big batch.
        rows.append(
            row(
                name,
                "largest streamed batch, cache off",
                largest["off"],
                "images",
                f"<= {work.batch_size}",
                largest["off"] <= work.batch_size,
            )
        )
    bad = {v: s for v, s in samples.items() if s != expected}
    if bad:
        rows.append(
            row(name, "samples per run differ from the split", str(bad), "", str(expected), False)
        )
    return rows


def _api_stream_rows(engine: Engine, work: Workload) -> list[dict]:
    """One streamed epoch (cache off) through ``run.batches`` against the trainer's own
    ``RunData.batches``, on the same run: what the Python API adds to the data path."""
    from signdb.store import runs as run_store
    from signdb.tracking import Run

    with transaction(engine) as session:
        record = run_store.get_run(session, work.run_id)
    run = Run(engine, record, work.shape, cache="off")
    data = RunData(engine, work.run_id, work.shape, work.classes, SEED, "off")
    times: dict[str, list[float]] = {"trainer": [], "api": []}
    for _ in range(REPEATS + 2):
        times["trainer"].append(_timed(lambda: sum(1 for _ in data.batches("train", BATCH)))[0])
        times["api"].append(_timed(lambda: sum(1 for _ in run.batches("train", BATCH)))[0])
    ratio = statistics.median(times["api"]) / statistics.median(times["trainer"])
    n = work.n
    return [
        row(
            "API streaming",
            "RunData.batches, one epoch",
            n / statistics.median(times["trainer"]),
            "samples/s",
        ),
        row(
            "API streaming",
            "run.batches, one epoch",
            n / statistics.median(times["api"]),
            "samples/s",
        ),
        row("API streaming", "run.batches time / trainer's", ratio, "x", "<= 1.05", ratio <= 1.05),
    ]


# -- end to end ----------------------------------------------------------------------
def _train_wall_rows(engine: Engine) -> tuple[list[dict], dict[str, float]]:
    walls: dict[str, list[float]] = {}
    jobs = {
        "paper's train() cache off": lambda: train(engine, _seed_config("off")),
        "paper's train() cache on": lambda: train(engine, _seed_config("on")),
        "MLP 1-epoch train() cache off": lambda: train(engine, _mlp_config(DATASET, "off")),
        "MLP 1-epoch train() cache on": lambda: train(engine, _mlp_config(DATASET, "on")),
    }
    for _ in range(REPEATS):
        for name, job in jobs.items():
            walls.setdefault(name, []).append(_timed(job)[0])
    medians = {k: statistics.median(v) for k, v in walls.items()}
    rows = [row("end to end", k, v, "s") for k, v in medians.items()]
    return rows, medians


def _checkpoint_rows(engine: Engine, work: Workload, epoch_seconds: float) -> list[dict]:
    """One MLP checkpoint (weights plus Adam state), as the trainer writes it."""
    model = work.new_model()
    model.train_step(work.X[:BATCH], work.y[:BATCH], 0)  # creates the optimizer state
    state = model.state_dict()
    floats = sum(v.size for v in state.values())
    seconds = []
    for step in range(REPEATS):
        with transaction(engine) as session:
            t, _ = _timed(
                lambda s=session, k=step: weight_store.save_tensors(
                    s, work.run_id, 10**6 + k, state
                )
            )
        seconds.append(t)
    ckpt = statistics.median(seconds)
    default_run = DEFAULT_MLP_EPOCHS * epoch_seconds
    # The default schedule: every tenth of the run, but at most one checkpoint
    # per training.CHECKPOINT_SECONDS (the final weights are written regardless).
    scheduled = min(DEFAULT_CHECKPOINTS - 1, int(default_run // CHECKPOINT_SECONDS))
    share = scheduled * ckpt / default_run
    return [
        row("checkpoint", f"MLP checkpoint write ({floats:,} floats)", ckpt, "s"),
        row(
            "checkpoint",
            f"{scheduled} intermediate checkpoints / default 30-epoch MLP training",
            share,
            "fraction",
            "< 0.05",
            share < 0.05,
        ),
        # Whatever the run, the default schedule writes at most one checkpoint per
        # CHECKPOINT_SECONDS, so this bounds the share of time spent on them.
        row(
            "checkpoint",
            f"bound for any run: write time / {CHECKPOINT_SECONDS:.0f} s floor",
            ckpt / CHECKPOINT_SECONDS,
            "fraction",
            "< 0.05",
            ckpt / CHECKPOINT_SECONDS < 0.05,
        ),
    ]


# -- logging overhead ----------------------------------------------------------------
@contextmanager
def _patched_logger(mode: str) -> Iterator[list[float]]:
    """``mode`` "timed": accumulate seconds spent in log/flush; "off": log is a no-op."""
    spent = [0.0]
    original_log, original_flush = MetricLogger.log, MetricLogger.flush

    def timed(fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return wrapper

    if mode == "timed":
        MetricLogger.log, MetricLogger.flush = timed(original_log), timed(original_flush)
    else:
        MetricLogger.log = lambda self, step, name, value: None
    try:
        yield spent
    finally:
        MetricLogger.log, MetricLogger.flush = original_log, original_flush


def _overhead_rows(engine: Engine) -> list[dict]:
    shares, with_log, without_log = [], [], []
    for _ in range(OVERHEAD_REPEATS):
        with _patched_logger("timed") as spent:
            wall, _ = _timed(lambda: train(engine, _seed_config("on")))
        shares.append(spent[0] / (wall - spent[0]))
        with_log.append(wall)
        with _patched_logger("off"):
            without_log.append(_timed(lambda: train(engine, _seed_config("on")))[0])
    share = statistics.median(shares)
    ab = statistics.median(with_log) / statistics.median(without_log) - 1
    return [
        row(
            "logging overhead",
            "paper's train(): time in MetricLogger / rest",
            share,
            "fraction",
            f"< {GOAL_OVERHEAD}",
            share < GOAL_OVERHEAD,
        ),
        row("logging overhead", "paper's train() with logging / log as no-op - 1", ab, "fraction"),
    ]


# -- peak memory ---------------------------------------------------------------------
_CHILD = """
import json, re, sys, time
import psutil
from signdb.db.engine import get_engine
from signdb.training import TrainerSettings, TrainSpec, train
base = psutil.Process().memory_info().rss
fields = json.loads(sys.argv[2])
config = TrainSpec(**{**fields, "trainer": TrainerSettings(**fields["trainer"])})
start = time.perf_counter()
result = train(get_engine(sys.argv[1]), config)
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "baseline_mb": base / 2**20,
    # VmHWM, not RUSAGE_SELF: Linux carries ru_maxrss across execve, so a child
    # started by subprocess would report its parent's peak if that was larger.
    "peak_mb": int(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read())[1]) / 2**10,
    "steps": result.steps,
}))
"""


def _enlarge(engine: Engine) -> int:
    return enlarge(engine, DATASET, BIG, PREP)


def _child_peak(url: str, dataset: str) -> dict[str, float]:
    fields = _mlp_fields(dataset, "off")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, url, json.dumps(fields)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _memory_rows(engine: Engine) -> list[dict]:
    images = _enlarge(engine)
    url = engine.url.render_as_string(hide_password=False)
    small, large = _child_peak(url, DATASET), _child_peak(url, BIG)
    growth = large["peak_mb"] / small["peak_mb"]
    name = "peak RSS, MLP epoch, cache off"
    return [
        row(name, "1x dataset", small["peak_mb"], "MiB"),
        row(name, f"10x dataset ({images:,} images)", large["peak_mb"], "MiB"),
        row(
            name, "10x / 1x", growth, "x", f"<= {GOAL_MEMORY_GROWTH}", growth <= GOAL_MEMORY_GROWTH
        ),
        row(name, "10x epoch wall time", large["seconds"], "s"),
    ]


# -- entry point ---------------------------------------------------------------------
def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=1, user_api="blas"), scratch_engine(DB) as engine:
        note("loading the dataset")
        load_dataset(engine, dataset_dir(), DATASET, PREP, workers=2)
        note("train() end to end, cache off and on")
        wall_rows, walls = _train_wall_rows(engine)
        seed_run, mlp_run = _latest_runs(engine)
        seed = Workload(engine, seed_run, "logreg", {"iterations": 150})
        mlp = Workload(engine, mlp_run, "mlp", {"iterations": 1, "batch_size": BATCH})
        note("throughput: seed experiment")
        rows += _throughput_rows("paper's logreg 0v1, 150 steps", seed, warm_cache=False)
        note("throughput: MLP epoch")
        rows += _throughput_rows("MLP 10 classes, 1 epoch", mlp, warm_cache=True)
        cold = RunData(engine, mlp_run, PREP.shape, mlp.classes, SEED, "on")
        load_s, _ = _timed(lambda: list(cold.batches("train", BATCH, epoch=0)))
        rows.append(row("MLP 10 classes, 1 epoch", "cold cache load + epoch batches", load_s, "s"))
        rows += wall_rows
        note("run.batches against the trainer's streaming")
        rows += _api_stream_rows(engine, mlp)
        note("checkpoint writes")
        rows += _checkpoint_rows(engine, mlp, mlp.train_memory()[0])
        note("logging overhead")
        rows += _overhead_rows(engine)
        note("peak memory at 1x and 10x the data (child processes)")
        rows += _memory_rows(engine)
    return rows


def _latest_runs(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as session:
        seed = session.scalar(text("SELECT max(id) FROM signdb.runs WHERE model = 'logreg'"))
        mlp = session.scalar(text("SELECT max(id) FROM signdb.runs WHERE model = 'mlp'"))
    return seed, mlp
