"""A 50,000-image dataset: ingest against decode-only, bytes per image, one epoch, RSS, `datasets show`.

The images are the shared dataset's 2062 JPEGs and copies of them shifted
right by 1..24 pixels (``np.roll``), written as JPEG files into a class-folder
tree under a temporary directory (not timed), so the load decodes real files
as a user's would. Everything runs against scratch databases on the server
signdb would use (the embedded one by default), dropped at the end.

* decode-only: ``iter_samples`` over the tree (2 decoding workers), no database;
* ingest: ``load_dataset`` of the same tree into an empty dataset;
* bytes per image: ``pg_total_relation_size('signdb.images') / count``;
* one epoch: a run over every class, its train split streamed (cache off) in
  batches of 64;
* peak RSS of the loading process (and of its decoding workers) at 5,000 and
  at 50,000 images, each load in a fresh child process;
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
from signdb.data import Sample, iter_samples
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


def _decode_only(tree: Path) -> tuple[float, int]:
    start = time.perf_counter()
    n = sum(1 for item in iter_samples(tree, PREP, workers=WORKERS) if isinstance(item, Sample))
    return time.perf_counter() - start, n


_CHILD = """
import json, resource, sys, time
from signdb.data.preprocess import Preprocessing
from signdb.db.engine import get_engine
from signdb.loading import load_dataset
if __name__ == "__main__":
    start = time.perf_counter()
    result = load_dataset(get_engine(sys.argv[1]), sys.argv[2], "scale", Preprocessing(), workers=2)
    print(json.dumps({
        "seconds": time.perf_counter() - start,
        "added": result.added,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
        "workers_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10,
    }))
"""


def _load_in_child(url: str, tree: Path) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "load_child.py"
    script.write_text(_CHILD)  # a file, not -c: the decoding workers re-import __main__
    out = subprocess.run(
        [sys.executable, str(script), url, str(tree)], capture_output=True, text=True, check=True
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
        note("decode only")
        decode_s, decoded = _decode_only(big)
        rows = [
            _row("images", n_big, "images"),
            _row("decode only", decoded / decode_s, "images/s"),
        ]
        with scratch_engine("signdb_bench_scale") as engine:
            url = engine.url.render_as_string(hide_password=False)
            note("ingest (load_dataset) in a child process")
            loaded = _load_in_child(url, big)
            ingest = loaded["added"] / loaded["seconds"]
            ratio = ingest / (decoded / decode_s)
            rows += [
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
            small_load = _load_in_child(engine.url.render_as_string(hide_password=False), small)
        growth = loaded["peak_mb"] / small_load["peak_mb"]
        rows += [
            _row(f"peak RSS of the loader, {n_small:,} images", small_load["peak_mb"], "MiB"),
            _row(f"peak RSS of the loader, {n_big:,} images", loaded["peak_mb"], "MiB"),
            _row("peak RSS 50k / 5k", growth, "x", "<= 1.1 (bounded)", growth <= 1.1),
            _row("peak RSS of a decoding worker, 50k", loaded["workers_peak_mb"], "MiB"),
        ]
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for row in run():
        print(row)
