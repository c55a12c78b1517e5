"""PyTorch: the torch engine against numpy, RunDataset against memory, peak RSS, GFLOP/s.

Everything runs in one go against a scratch database ``signdb_bench_torch`` on the
server signdb would use, dropped at the end, on the same data (the shared dataset,
64x64 gray, 10 classes; the train split of one run) and the same architecture
(signdb's default ``cnn``, batch 32, default hyperparameters), on the CPU:

* Engines: one epoch of ``ConvNet.train_step`` against one of
  ``TorchConvNet.train_step`` over the same batches, held in memory, in the run's
  shuffled order for epoch 0. Goal: torch >= 2.5x numpy.
* Data path: the same ``TorchConvNet`` epoch fed by ``signdb.torch.RunDataset``
  through a ``DataLoader(num_workers=2)`` (workers forked per epoch, as by default),
  against fed from in-memory tensors. The workers' batches interleave two shards,
  so they hold other images than the in-memory ones, but as many, of the same
  sizes. Goal: >= 0.9x. The same RunDataset epoch without training is timed too:
  the data path's own cost, apart from its contention with training for the cores.
* Peak RSS of a child process iterating one ``RunDataset`` epoch (DataLoader, 2
  workers, no training) on the dataset and on a 10x copy of it (bench_train's
  copies shifted by 1..9 pixels): the main process and its largest worker
  (``VmHWM`` and the workers' ``ru_maxrss``: mostly PyTorch itself), and the main
  process's growth during the epoch (sampled): what the data path adds.
* Achieved GFLOP/s of both engines beside the machine's peak; see :func:`cnn_macs`
  and :func:`machine_peak` for the formulas and what they assume.
* GPU: the engine and data-path rows again on CUDA where torch sees a GPU;
  otherwise a row saying there is none.

The three training variants alternate within each repeat, so background load hits
them alike; figures are medians of ``REPEATS``. Both engines use every core at the
library defaults (OpenBLAS for numpy, OpenMP for torch); on two shared cores that
makes them sensitive to other processes, so read the load-average row beside them.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sqlalchemy import Engine
from threadpoolctl import threadpool_info
from torch.utils.data import DataLoader

import signdb
from bench._data import enlarge, row
from bench._progress import note
from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.loading import load_dataset
from signdb.ml.cnn import ConvNet, fit_layers
from signdb.ml.torchnet import TorchConvNet
from signdb.torch import RunDataset
from signdb.tracking import Run

DB = "signdb_bench_torch"
DATASET = "sld"
BIG = "sld10"  # the dataset and 9 copies shifted by 1..9 pixels, as in bench_train
SEED = 42
BATCH = 32
WORKERS = 2
REPEATS = 3
GOAL_SPEEDUP = 2.5  # torch samples/s over numpy's
GOAL_DATA_RATIO = 0.9  # RunDataset-fed samples/s over in-memory
GOAL_MEMORY_GROWTH = 1.25  # peak RSS at 10x over peak RSS at 1x
PREP = Preprocessing()  # the defaults: 64x64 gray
#: fp32 lanes of the widest vector FMA the CPU flags announce, widest first.
SIMD_LANES = (("avx512f", 16), ("avx2", 8), ("sse2", 4))

Batches = list[tuple[torch.Tensor, torch.Tensor]]


# -- arithmetic ------------------------------------------------------------------------
def cnn_macs(shape: tuple[int, int, int], classes: int) -> int:
    """Multiply-adds of one forward pass of the default ``cnn`` for one image of ``shape``.

    Per layer, with the map ``h x w x c`` it receives: ``conv<f>k<k>`` ("same"
    padding, stride 1) costs ``h * w * f * k * k * c``; ``dense<n>`` costs
    ``inputs * n`` (the last one ``inputs * classes``). Pooling, ReLU, batch
    norm, dropout and the softmax are a few operations per activation, not per
    weight, and are left out: a lower bound, off by about 1% here. Training is
    taken as 3x the forward pass (the backward pass computes the gradients of the
    inputs and of the weights, each about one forward), so it costs
    ``3 * 2 * macs`` FLOPs per image (2 FLOPs per multiply-add). Checked against
    ``torch.utils.flop_counter.FlopCounterMode`` on ``TorchConvNet``: the forward
    count is identical (30.0 MFLOP at 64x64x1), forward plus backward is 88.9 MFLOP
    against our 90.1 (the first convolution needs no input gradient).
    """
    h, w, c = shape
    flat, macs = h * w * c, 0
    for layer in fit_layers("auto", shape):
        if layer[0] == "conv":
            _, f, k = layer
            macs += h * w * f * k * k * c
            c = f
            flat = h * w * c
        elif layer[0] == "pool":
            h, w = h // 2, w // 2
            flat = h * w * c
        elif layer[0] == "gap":
            flat = c
        else:
            macs += flat * layer[1]
            flat = layer[1]
    return macs + flat * classes


def machine_peak() -> tuple[float, str]:
    """(peak fp32 GFLOP/s, how it was computed): cores x clock x SIMD lanes x 2 (FMA).

    Assumes one vector FMA of the widest announced width per cycle per core at
    the clock ``lscpu`` reports as its maximum, else ``/proc/cpuinfo``'s
    ``cpu MHz`` (under a hypervisor, the nominal clock: boost unknown). That is
    exact for AMD Zen 4, which runs a 512-bit FMA as two 256-bit halves on its
    two FMA pipes; a CPU with two full-width FMA units peaks at twice this.
    """
    cpuinfo = open("/proc/cpuinfo").read()
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)[1].split())
    lanes, isa = next(((n, f) for f, n in SIMD_LANES if f in flags), (1, "scalar"))
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", lscpu, re.M))
    mhz = fields.get("CPU max MHz") or re.search(r"^cpu MHz\s*:\s*(\S+)", cpuinfo, re.M)[1]
    cores = int(fields.get("Core(s) per socket", 0)) * int(fields.get("Socket(s)", 0))
    cores = cores or os.cpu_count() or 1
    ghz = float(mhz) / 1000
    peak = cores * ghz * lanes * 2
    return peak, f"{cores} cores x {ghz:.2f} GHz x {lanes} fp32 lanes ({isa}) x 2"


# -- the three training variants -------------------------------------------------------
def _memory_batches(run: Run) -> Batches:
    """The run's train split for epoch 0 as (NCHW, y) tensors, in ``run.batches`` order."""
    return [
        (torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))), torch.from_numpy(y))
        for X, y in run.batches("train", BATCH, shuffle=True, epoch=0)
    ]


def _model(engine: str, classes: list[int], device: str = "cpu") -> Any:
    model = (TorchConvNet if engine == "torch" else ConvNet)(seed=SEED, batch_size=BATCH)
    if engine == "torch":
        model.set_device(device)
    model.initialize(PREP.shape, classes)
    model.plan(10_000)  # the default cosine needs a horizon; these timings do not depend on it
    return model


def _warm_up(model: Any, batches: Batches) -> None:
    """One untimed step on a throwaway model: library set-up is not an epoch's cost."""
    X, y = batches[0]
    model.train_step(X.permute(0, 2, 3, 1).numpy(), y.numpy(), 0)


def _train_epoch(model: Any, batches: Any) -> tuple[float, int]:
    """(seconds, samples) of one epoch of ``train_step`` over NCHW (X, y) tensor batches."""
    samples = 0
    start = time.perf_counter()
    for step, (X, y) in enumerate(batches):
        model.train_step(X.permute(0, 2, 3, 1).numpy(), y.numpy(), step)  # NHWC, no copy
        samples += len(y)
    return time.perf_counter() - start, samples


#: The training variants: what feeds which engine.
VARIANTS = {
    "numpy": "numpy ConvNet, in-memory arrays",
    "torch": "TorchConvNet, in-memory tensors",
    "stream": f"TorchConvNet, RunDataset + DataLoader({WORKERS} workers)",
}


def _variants(run: Run, batches: Batches, device: str) -> dict[str, Callable[[], tuple]]:
    """key of VARIANTS -> one timed epoch; each builds a fresh model (the same seed) first."""
    loader = DataLoader(RunDataset(run, "train"), batch_size=BATCH, num_workers=WORKERS)

    def epoch(engine: str, data: Any) -> Callable[[], tuple[float, int]]:
        def go() -> tuple[float, int]:
            _warm_up(_model(engine, run.classes, device), batches)
            return _train_epoch(_model(engine, run.classes, device), data)

        return go

    out = {"torch": epoch("torch", batches), "stream": epoch("torch", loader)}
    if device == "cpu":  # numpy has no GPU
        out = {"numpy": epoch("numpy", batches), **out}
    return out


def _training_rates(run: Run, batches: Batches, device: str) -> dict[str, float]:
    """Median samples/s of each variant over REPEATS alternating epochs."""
    variants = _variants(run, batches, device)
    times: dict[str, list[float]] = {key: [] for key in variants}
    expected = sum(len(y) for _, y in batches)
    for repeat in range(REPEATS):
        for key, job in variants.items():
            note(f"{device}: {VARIANTS[key]}, epoch {repeat + 1} of {REPEATS}")
            seconds, samples = job()
            if samples != expected:
                raise RuntimeError(f"{VARIANTS[key]} trained on {samples} images, not {expected}")
            times[key].append(seconds)
    return {key: expected / statistics.median(ts) for key, ts in times.items()}


def _training_rows(rates: dict[str, float], device: str, flops: float) -> list[dict]:
    bench = f"default cnn, 1 epoch, batch {BATCH}, {device}"
    rows = [row(bench, VARIANTS[key], rate, "samples/s") for key, rate in rates.items()]
    if "numpy" in rates:
        speedup = rates["torch"] / rates["numpy"]
        ok = speedup >= GOAL_SPEEDUP
        rows.append(row(bench, "torch / numpy", speedup, "x", f">= {GOAL_SPEEDUP}", ok))
    ratio = rates["stream"] / rates["torch"]
    ok = ratio >= GOAL_DATA_RATIO
    rows.append(row(bench, "RunDataset / in-memory", ratio, "x", f">= {GOAL_DATA_RATIO}", ok))
    for key, rate in rates.items():
        rows.append(row("achieved", f"{device}: {VARIANTS[key]}", rate * flops / 1e9, "GFLOP/s"))
    return rows


def _data_only_rows(run: Run, batches: Batches, torch_rate: float) -> list[dict]:
    """A RunDataset epoch without training: what the data path costs on its own."""
    images = sum(len(y) for _, y in batches)
    loader = DataLoader(RunDataset(run, "train"), batch_size=BATCH, num_workers=WORKERS)
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        seen = sum(len(y) for _, y in loader)
        seconds.append(time.perf_counter() - start)
        if seen != images:
            raise RuntimeError(f"a RunDataset epoch yielded {seen} images, not {images}")
    alone = statistics.median(seconds)
    share = alone / (images / torch_rate)
    bench = f"RunDataset epoch alone, {WORKERS} workers, no training"
    return [
        row(bench, "wall time (workers forked, query, transfer, decode)", alone, "s"),
        row(bench, "/ in-memory TorchConvNet epoch: the data path's own cost", share, "x"),
    ]


def _flop_rows(per_sample: float, macs: int) -> list[dict]:
    peak, how = machine_peak()
    return [
        row("achieved", "default cnn forward multiply-adds per image", macs, "MAC"),
        row("achieved", "training FLOPs per image (3 x 2 x MACs)", per_sample, "FLOP"),
        row("achieved", f"machine peak fp32: {how}", peak, "GFLOP/s"),
    ]


# -- peak memory -----------------------------------------------------------------------
_CHILD = """
import json, re, resource, sys
import psutil
import signdb
from torch.utils.data import DataLoader
from signdb.torch import RunDataset
me = psutil.Process()
db = signdb.connect()  # $SIGNDB_DATABASE_URL
with db.start_run(sys.argv[1], "bench:rss", classes="all") as run:
    data = RunDataset(run, "train")
    base, grown, seen = me.memory_info().rss, 0, 0
    for _, y in DataLoader(data, batch_size=int(sys.argv[2]), num_workers=2):
        seen += len(y)
        if seen % 1024 < len(y):  # sample every ~1024 images
            grown = max(grown, me.memory_info().rss - base)
print(json.dumps({
    "images": seen,
    "expected": run.record.train_size,
    # VmHWM, not RUSAGE_SELF: Linux carries ru_maxrss across execve, so a child
    # started by subprocess would report its parent's peak if that was larger.
    "peak_mb": int(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read())[1]) / 2**10,
    "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10,
    "growth_mb": grown / 2**20,
}))
"""


def _enlarge(engine: Engine) -> int:
    return enlarge(engine, DATASET, BIG, PREP)


def _child_peak(engine: Engine, dataset: str) -> dict[str, float]:
    # The URL goes by the environment: not in argv, where ps and error messages show it.
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, dataset, str(BATCH)],
        capture_output=True,
        text=True,
        env={**os.environ, "SIGNDB_DATABASE_URL": url},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the RunDataset epoch of {dataset} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["images"] != result["expected"]:
        raise RuntimeError(f"a RunDataset epoch of {dataset} saw {result}")
    return result


def _memory_rows(engine: Engine) -> list[dict]:
    images = _enlarge(engine)
    small, large = _child_peak(engine, DATASET), _child_peak(engine, BIG)
    name = f"peak RSS, RunDataset epoch, {WORKERS} workers"
    rows = []
    for key, who in (("peak_mb", "main process"), ("worker_peak_mb", "largest worker")):
        growth = large[key] / small[key]
        ok = growth <= GOAL_MEMORY_GROWTH
        rows += [
            row(name, f"{who}, 1x dataset ({small['images']:,} train images)", small[key], "MiB"),
            row(name, f"{who}, 10x dataset ({large['images']:,} train images)", large[key], "MiB"),
            row(name, f"{who}, 10x / 1x", growth, "x", f"<= {GOAL_MEMORY_GROWTH}", ok),
        ]
    for result, size in ((small, "1x"), (large, "10x")):
        growth = result["growth_mb"]
        rows.append(row(name, f"main process RSS growth during the {size} epoch", growth, "MiB"))
    rows.append(row(name, f"10x dataset: {images:,} images loaded", images, "images"))
    return rows


# -- entry point -----------------------------------------------------------------------
def _gpu_rows(run: Run, batches: Batches, flops: float) -> list[dict]:
    if not torch.cuda.is_available():
        return [row("GPU", "no GPU here: torch.cuda.is_available() is False", None, "")]
    note(f"CUDA: {torch.cuda.get_device_name()}")
    return _training_rows(_training_rates(run, batches, "cuda"), "cuda", flops)


def run() -> list[dict[str, Any]]:
    load = os.getloadavg()[0]
    rows = [row("machine", f"load average at start, {os.cpu_count()} CPUs", load, "")]
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    rows.append(row("machine", "threads: torch (OpenMP)", torch.get_num_threads(), ""))
    rows.append(row("machine", "threads: numpy (BLAS)", max(blas, default=None), ""))
    macs = cnn_macs(PREP.shape, 10)
    flops = 3 * 2 * macs
    with scratch_engine(DB) as engine:
        note("loading the dataset")
        load_dataset(engine, dataset_dir(), DATASET, PREP, workers=2)
        db = signdb.Database(engine)
        with db.start_run(DATASET, "bench:torch", classes="all") as run:
            batches = _memory_batches(run)
            note(f"{sum(len(y) for _, y in batches)} train images, {len(batches)} batches")
            rates = _training_rates(run, batches, "cpu")
            rows += _training_rows(rates, "cpu", flops)
            rows += _data_only_rows(run, batches, rates["torch"])
            rows += _gpu_rows(run, batches, flops)
        rows += _flop_rows(flops, macs)
        note("peak memory at 1x and 10x the data (child processes)")
        rows += _memory_rows(engine)
    rows.append(row("machine", "load average at end", os.getloadavg()[0], ""))
    return rows
