"""Scaling out one run: the batched feed against COPY, 1 against 2 gloo processes, a standby.

Everything runs in one go against a scratch database ``signdb_bench_distributed``
on the server signdb would use (dropped at the end), on the shared dataset
(64x64 gray, 10 classes) and a 10x copy of it (bench_train's copies shifted by
1..9 pixels), one run of every class, its train split:

* Feed: images/s of one epoch of the train split through
  ``signdb.torch.RunDataset(run, "train", batch_size=32)`` (iterated directly,
  and through ``DataLoader(batch_size=None, num_workers=2)``), through the
  per-image ``RunDataset`` (``DataLoader(batch_size=32)``, no workers), and of a
  raw binary ``COPY`` of the same rows in the same order, only received (what
  any reader must at least pay). Goal: batched >= 0.8x raw COPY. The variants
  alternate within each repeat; figures are medians of ``REPEATS``.
* Training: the default ``cnn`` (torch engine, batch 32) on the shared
  dataset, ``signdb train`` in one process against ``--nproc 2`` (gloo), as a
  user runs them: samples/s of one epoch, the second of three, timed between
  the checkpoints that close the first two (see :func:`_epoch_seconds`). On
  two cores this measures what DDP costs (a gradient all-reduce and a metrics
  all-reduce per step, two processes sharing the cores), not a speed-up: more
  processes only help with more cores or GPUs.
* GPU: the feed's images/s into the GPU (pinned batches, ``non_blocking``)
  and the ``cnn``'s samples/s on one GPU, where torch sees one; else "no GPU here".
* Standby: the batched feed's images/s from a private primary and from a hot
  standby of it (``pg_basebackup -R``, started here), alternating.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

import signdb
from bench._data import enlarge, row
from bench._progress import note
from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.db import migrate
from signdb.db.engine import get_engine
from signdb.loading import load_dataset
from signdb.torch import RunDataset
from signdb.tracking import Run

DB = "signdb_bench_distributed"
DATASET = "sld"
BIG = "sld10"
BATCH = 32
REPEATS = 5
TRAIN_REPEATS = 3
GOAL_FEED = 0.8  # batched RunDataset over raw COPY
PREP = Preprocessing()


# -- feed ---------------------------------------------------------------------------------
def _raw_copy(run: Run) -> int:
    """Receive the train split's rows in the epoch's order by binary COPY; images read."""
    query = (
        "COPY (SELECT i.id, i.label, i.pixels FROM signdb.run_images ri "
        "JOIN signdb.images i ON i.id = ri.image_id "
        "WHERE ri.run_id = %(run)s AND ri.split = 'train' "
        "ORDER BY md5(i.sha256 || ':' || %(seed)s || ':0'), i.id) TO STDOUT (FORMAT BINARY)"
    )
    received = 0
    with run.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(query, {"run": run.id, "seed": str(run.record.seed)}) as copy:
            for _ in copy:
                received += 1
    return received - 1  # the trailer is a message of its own


def _count(items: Any) -> int:
    return sum(len(y) for _, y in items)


def _feed_variants(run: Run) -> dict[str, Callable[[], int]]:
    return {
        "raw binary COPY (received only)": lambda: _raw_copy(run),
        "batched RunDataset, no workers": lambda: _count(
            RunDataset(run, "train", batch_size=BATCH)
        ),
        "batched RunDataset, DataLoader 2 workers": lambda: _count(
            DataLoader(RunDataset(run, "train", batch_size=BATCH), batch_size=None, num_workers=2)
        ),
        "per-image RunDataset, DataLoader(batch_size=32)": lambda: _count(
            DataLoader(RunDataset(run, "train"), batch_size=BATCH)
        ),
    }


def _rates(variants: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    counts: dict[str, int] = {}
    for repeat in range(repeats):
        for name, fn in variants.items():  # alternating: background load hits all alike
            start = time.perf_counter()
            counts[name] = fn()
            times[name].append(time.perf_counter() - start)
        note(f"repeat {repeat + 1}: " + ", ".join(f"{times[n][-1]:.2f}s" for n in variants))
    return {name: counts[name] / statistics.median(t) for name, t in times.items()}


def _feed_rows(run: Run, label: str) -> list[dict]:
    n = run.data.sizes["train"]
    note(f"feed: {label}, {n:,} train images")
    rates = _rates(_feed_variants(run), REPEATS)
    raw = rates["raw binary COPY (received only)"]
    rows = [row("feed", f"{label}: {name}", rate, "images/s") for name, rate in rates.items()]
    ratio = rates["batched RunDataset, no workers"] / raw
    rows.append(
        row(
            "feed",
            f"{label}: batched (no workers) / raw COPY",
            ratio,
            "x",
            f">= {GOAL_FEED}",
            ratio >= GOAL_FEED,
        )  # fmt: skip
    )
    per_image = rates["per-image RunDataset, DataLoader(batch_size=32)"]
    batched = rates["batched RunDataset, no workers"]
    rows.append(row("feed", f"{label}: batched / per-image", batched / per_image, "x"))
    return rows


# -- training -----------------------------------------------------------------------------
def _epoch_seconds(
    url: str, nproc: int, device: str = "cpu", threads: int | None = None
) -> tuple[float, int]:
    """(seconds, images) of the second epoch of a ``signdb train`` of the default cnn.

    A checkpoint closes every epoch (``--checkpoint-every`` = steps per epoch),
    and ``weights.created_at`` is when its transaction began: right after the
    epoch's last step. The second epoch, between the first two, is training alone:
    no start-up, no first-batch warm-up, no final evaluation.
    """
    from signdb.tracking.feed import epoch_plan

    with signdb.connect(url).start_run(DATASET, "bench:size", classes="all") as probe:
        train = probe.data.sizes["train"]
    plan = epoch_plan(train, BATCH, nproc)
    cmd = [sys.executable, "-m", "signdb", "train", "--dataset", DATASET, "--model", "cnn",
           "--engine", "torch", "--classes", "all", "--iterations", "3",
           "--checkpoint-every", str(plan.steps), "--device", device,
           "--eval-every", "100000", "--json"]  # fmt: skip
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "SIGNDB_DATABASE_URL": url}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"signdb train failed: {proc.stderr[-2000:]}")
    run_id = json.loads(proc.stdout)["run_id"]
    with get_engine(url).connect() as conn:
        started = conn.exec_driver_sql(
            "SELECT step, min(created_at) FROM signdb.weights WHERE run_id = %(r)s "
            "AND step IN (%(a)s, %(b)s) GROUP BY step ORDER BY step",
            {"r": run_id, "a": plan.steps, "b": 2 * plan.steps},
        ).all()
    assert len(started) == 2, started
    return (started[1][1] - started[0][1]).total_seconds(), plan.used


def _training_rows(url: str) -> list[dict]:
    """One process as a user runs it (torch's threads: one per core), one process on one
    thread, and two processes (``--nproc 2``: one thread each)."""
    variants = {
        "1 process, torch's default threads": (1, None),
        "1 process, OMP_NUM_THREADS=1": (1, 1),
        "2 processes (--nproc 2, gloo), OMP_NUM_THREADS=1 each": (2, None),
    }
    measured: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(TRAIN_REPEATS):
        for name, (nproc, threads) in variants.items():  # alternating, as the feed's
            seconds, images = _epoch_seconds(url, nproc, threads=threads)
            measured[name].append(images / seconds)
            note(f"cnn, {name}, repeat {repeat + 1}: an epoch in {seconds:.1f} s")
    rates = {name: statistics.median(v) for name, v in measured.items()}
    rows = [
        row("training", f"default cnn, one epoch, CPU: {name}", rate, "samples/s")
        for name, rate in rates.items()
    ]
    two, one = list(rates.values())[2], list(rates.values())[1]
    rows.append(
        row(
            "training",
            "2 processes / 1 process on one thread (2 cores: DDP's cost, not a speed-up)",
            two / one,
            "x",
        )  # fmt: skip
    )
    return rows


def _gpu_rows(url: str, run: Run) -> list[dict]:
    if not torch.cuda.is_available():
        return [row("GPU", "no GPU here: torch.cuda.is_available() is False", None, "")]
    note(f"CUDA: {torch.cuda.get_device_name()}")

    def into_gpu() -> int:
        n = 0
        for X, y in RunDataset(run, "train", batch_size=BATCH, pin_memory=True):
            X.to("cuda", non_blocking=True)
            n += len(y)
        torch.cuda.synchronize()
        return n

    rate = _rates({"feed into the GPU": into_gpu}, REPEATS)["feed into the GPU"]
    seconds, images = _epoch_seconds(url, 1, "cuda")
    return [
        row("GPU", f"feed into {torch.cuda.get_device_name()}", rate, "images/s"),
        row("GPU", "default cnn, one epoch, 1 GPU", images / seconds, "samples/s"),
    ]


# -- standby ------------------------------------------------------------------------------
def _feed_of(run: Run) -> Callable[[], int]:
    return lambda: _count(RunDataset(run, "train", batch_size=BATCH))


def _standby_rows() -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.standby import primary_and_standby

    note("starting a private primary and a hot standby of it")
    with primary_and_standby() as pair:
        with pair.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{DB}"')
        primary_url, standby_url = pair.url(DB), pair.url(DB, standby=True)
        engine = get_engine(primary_url)
        migrate.upgrade(engine)
        load_dataset(engine, dataset_dir(), DATASET, PREP, workers=2)
        enlarge(engine, DATASET, BIG, PREP)
        pair.wait_for_standby(DB)
        try:
            with ExitStack() as stack:
                runs = {}
                for where, read in (("primary", None), ("standby", standby_url)):
                    db = signdb.connect(primary_url, read_url=read)
                    runs[where] = stack.enter_context(
                        db.start_run(BIG, "bench:standby", classes="all", cache="off")
                    )
                rates = _rates({w: _feed_of(r) for w, r in runs.items()}, REPEATS)
        finally:
            for url in (primary_url, standby_url):
                get_engine(url).dispose()
    return [
        row("standby", f"batched feed from the {where} (10x data)", rate, "images/s")
        for where, rate in rates.items()
    ]


def run() -> list[dict[str, Any]]:
    rows = [row("machine", f"load average at start, {os.cpu_count()} CPUs", os.getloadavg()[0], "")]
    with scratch_engine(DB) as engine:
        note("loading the dataset and its 10x copy")
        load_dataset(engine, dataset_dir(), DATASET, PREP, workers=2)
        enlarge(engine, DATASET, BIG, PREP)
        db = signdb.Database(engine)
        with db.start_run(BIG, "bench:feed", classes="all", cache="off") as big:
            rows += _feed_rows(big, "10x data")
        with db.start_run(DATASET, "bench:feed", classes="all", cache="off") as small:
            rows += _feed_rows(small, "1x data")
            url = engine.url.render_as_string(hide_password=False)
            note("training: 1 process against 2 (gloo)")
            rows += _training_rows(url)
            rows += _gpu_rows(url, small)
    rows += _standby_rows()
    rows.append(row("machine", "load average at end", os.getloadavg()[0], ""))
    return rows
