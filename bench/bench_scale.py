"""A 50,000-image dataset: ingest against decode-only, bytes per image, one epoch, RSS, `datasets show`.

The images are the shared dataset's 2062 JPEGs and copies of them shifted
right by 1..24 pixels (``np.roll``), written as JPEG files into a class-folder
tree under a temporary directory (not timed), so the load decodes real files
as a user's would. Everything runs against scratch databases on the server
signdb would use (the embedded one by default), dropped at the end.

* decode-only: ``iter_samples`` over the tree (2 decoding workers), no database;
* ingest: ``load_dataset`` of the same tree into an empty dataset; both in fresh child
  processes, interleaved, ``PAIRS`` times; the ratio is the median of the pairs' ratios;
* bytes per image: ``pg_total_relation_size('signdb.images') / count``;
* one epoch: a run over every class, its train split streamed (cache off) in
  batches of 64;
* peak RSS (VmHWM) of the loading process and of its largest decoding worker at
  5,000 and at 50,000 images, each load in a fresh child process;
* ``datasets show`` (per-class and per-split counts): median of 5.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import text

from bench._progress import note
from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import transaction
from signdb.store import datasets as ds_store
from signdb.tracking import RunData, start_run

TARGET = 50_000
SMALL = 5_000
SHIFTS = 24  # 2062 * 25 copies >= 50,000
WORKERS = 2
PREP = Preprocessing()
GOAL_INGEST = 0.9
PAIRS = 3
GOAL_SHOW_MS = 200


def _write_tree(root: Path, limit: int) -> int:
    """``limit`` JPEG files: the originals, then their shifted copies, per class folder."""
    originals = sorted(
        p for p in dataset_dir().glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg")
    )
    written = 0
    for shift in range(SHIFTS + 1):
        for path in originals:
            if written >= limit:
                return written
            out = root / path.parent.name / f"{path.stem}_s{shift:02d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            if shift == 0:
                shutil.copy(path, out)
            else:
                with Image.open(path) as img:
                    arr = np.roll(np.asarray(img.convert("RGB")), shift, axis=1)
                Image.fromarray(arr).save(out, quality=92)
            written += 1
    return written


_CHILD = """
import json, os, re, sys, threading, time
from signdb.data import Sample, iter_samples
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import get_engine
from signdb.loading import load_dataset

def peak_mb(pid):
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so this child
    # would report its parent's peak (the bench that wrote the JPEG tree).
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\\s*(\\d+) kB", f.read())[1]) / 2**10

def descendants(root):
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found

def watch_workers(peaks, done):
    # Decoding workers are forked by the forkserver, a child of this process:
    # RUSAGE_CHILDREN never sees them, so their peaks are read while they run.
    while not done.wait(0.25):
        for pid in descendants(os.getpid()):
            try:
                peaks[pid] = max(peaks.get(pid, 0.0), peak_mb(pid))
            except (OSError, TypeError):
                continue

if __name__ == "__main__":
    url, tree, mode = sys.argv[1:4]
    peaks, done = {}, threading.Event()
    watcher = threading.Thread(target=watch_workers, args=(peaks, done), daemon=True)
    watcher.start()
    start = time.perf_counter()
    if mode == "decode":
        images = sum(1 for item in iter_samples(tree, Preprocessing(), workers=2) if isinstance(item, Sample))
    else:
        images = load_dataset(get_engine(url), tree, "scale", Preprocessing(), workers=2).added
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    print(json.dumps({
        "seconds": seconds,
        "images": images,
        "peak_mb": peak_mb("self"),
        # The forkserver itself is small; the largest process below it is a worker.
        "workers_peak_mb": max(peaks.values(), default=0.0),
    }))
"""


def _in_child(url: str, tree: Path, mode: str = "load") -> dict[str, float]:
    """Decode (``mode="decode"``) or load ``tree`` in a fresh process; its timings and peaks.

    Both in a child alike: a child's decoding workers re-run its script (a file,
    not ``-c``) before their first task, a start-up cost neither may skip.
    """
    script = Path(tempfile.mkdtemp()) / "load_child.py"
    script.write_text(_CHILD)
    out = subprocess.run(
        [sys.executable, str(script), url, str(tree), mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _epoch(engine: Any) -> tuple[float, int]:
    run = start_run(engine, dataset="scale", model="bench-epoch", classes=None, cache="off")
    with run:
        data = RunData(engine, run.id, PREP.shape, run.classes, run.record.seed, "off")
        start = time.perf_counter()
        n = sum(len(y) for _, y in data.batches("train", 64, epoch=0))
        return time.perf_counter() - start, n


def _show_ms(engine: Any) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        with transaction(engine) as session:
            ds_store.summarize(session, "scale", mode="auto")
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _row(metric: str, value: Any, unit: str, goal: str = "", ok: Any = None) -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "goal": goal, "ok": ok}


def run() -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="signdb-scale-"))
    try:
        note(f"writing {TARGET:,} JPEG files (shifted copies of the shared images)")
        big, small = work / "big", work / "small"
        n_big = _write_tree(big, TARGET)
        n_small = _write_tree(small, SMALL)
        rows = [_row("images", n_big, "images")]
        with scratch_engine("signdb_bench_scale") as engine:
            url = engine.url.render_as_string(hide_password=False)
            decodes, loads = [], []
            for i in range(PAIRS):  # interleaved, so a change in the machine's load hits both
                note(
                    f"decode only, then ingest (load_dataset), each in a child process ({i + 1}/{PAIRS})"
                )
                decoded = _in_child(url, big, "decode")
                decodes.append(decoded["images"] / decoded["seconds"])
                with engine.begin() as conn:
                    conn.execute(text("TRUNCATE signdb.datasets, signdb.images CASCADE"))
                loaded = _in_child(url, big)
                loads.append(loaded["images"] / loaded["seconds"])
            decode, ingest = statistics.median(decodes), statistics.median(loads)
            ratio = statistics.median(b / a for a, b in zip(decodes, loads, strict=True))
            rows += [
                _row("decode only", decode, "images/s"),
                _row("ingest", ingest, "images/s"),
                _row("ingest / decode-only", ratio, "x", f">= {GOAL_INGEST}", ratio >= GOAL_INGEST),
            ]
            with engine.connect() as conn:
                total = conn.scalar(text("SELECT pg_total_relation_size('signdb.images')"))
                count = conn.scalar(text("SELECT count(*) FROM signdb.images"))
            rows.append(_row("database bytes per image", total / count, "bytes"))
            note("one streaming epoch, cache off")
            epoch_s, seen = _epoch(engine)
            rows.append(_row("one epoch, streamed (batch 64)", seen / epoch_s, "images/s"))
            note("datasets show")
            show = _show_ms(engine)
            rows.append(_row("datasets show", show, "ms", f"< {GOAL_SHOW_MS}", show < GOAL_SHOW_MS))
        with scratch_engine("signdb_bench_scale_small") as engine:
            note(f"peak RSS of a {n_small:,}-image load, for comparison")
            small_load = _in_child(engine.url.render_as_string(hide_password=False), small)
        growth = loaded["peak_mb"] / small_load["peak_mb"]
        rows += [
            _row(f"peak RSS of the loader, {n_small:,} images", small_load["peak_mb"], "MiB"),
            _row(f"peak RSS of the loader, {n_big:,} images", loaded["peak_mb"], "MiB"),
            _row("peak RSS 50k / 5k", growth, "x", "<= 1.1 (bounded)", growth <= 1.1),
            _row(
                f"peak RSS of a decoding worker, {n_small:,} images",
                small_load["workers_peak_mb"],
                "MiB",
            ),
            _row(
                f"peak RSS of a decoding worker, {n_big:,} images", loaded["workers_peak_mb"], "MiB"
            ),
        ]
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for row in run():
        print(row)
