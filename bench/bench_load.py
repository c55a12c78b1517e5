"""Load throughput against decode-only throughput, stored size, and the re-load (dedup) path.

Everything is measured in one run, on the shared dataset, against a scratch
database ``signdb_bench`` on the server signdb would use (the embedded one by
default). Decode-only and load runs are interleaved, so a change in the
machine's background load hits both alike, and each figure is the median of
``REPEATS`` runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench._scratch import scratch_engine
from signdb.config import dataset_dir
from signdb.data import iter_samples
from signdb.data.preprocess import Preprocessing
from signdb.loading import load_dataset, load_samples

REPEATS = 3
WORKERS = 2
DATASET = "bench"
GOAL_RATIO = 0.9


def _decode_only(prep: Preprocessing) -> int:
    n = 0
    for _ in iter_samples(dataset_dir(), prep, workers=WORKERS):
        n += 1
    return n


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        # CASCADE: the scratch database holds no runs, but they reference datasets.
        conn.execute(text("TRUNCATE signdb.datasets, signdb.images CASCADE"))


def _load(engine: Engine, prep: Preprocessing) -> tuple[int, int]:
    result = load_dataset(engine, dataset_dir(), DATASET, prep, workers=WORKERS)
    return result.added, result.skipped_duplicates


def _write_only(engine: Engine, prep: Preprocessing, samples: list) -> None:
    keys = {s.class_key for s in samples}
    result = load_samples(engine, samples, DATASET, prep, class_keys=keys)
    assert result.added == len(samples), result.added


def _cli_load(engine: Engine) -> float:
    """Seconds of ``signdb load`` in a fresh process: what a user waits for, start-up included."""
    script = Path(sys.executable).with_name("signdb")  # the console script pip installed
    env = {**os.environ, "SIGNDB_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    start = time.perf_counter()
    subprocess.run(
        [str(script), "load", str(dataset_dir()), "--dataset", "cli", "--json"],
        env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - start


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def run() -> list[dict[str, Any]]:
    prep = Preprocessing()  # the defaults: 64x64 gray, LANCZOS
    decode_s, load_s, reload_s, write_s, cli_s = [], [], [], [], []
    with scratch_engine("signdb_bench") as engine:
        # Not measured: a warm-up (the first pool of a process also starts the
        # forkserver and its imports, which later runs reuse) that keeps the
        # decoded images for timing the database writes on their own.
        samples = list(iter_samples(dataset_dir(), prep, workers=WORKERS))
        for _ in range(REPEATS):
            t, n = _timed(_decode_only, prep)
            decode_s.append(t)
            _empty(engine)
            t, (added, skipped) = _timed(_load, engine, prep)
            assert (added, skipped) == (n, 0), (added, skipped, n)
            load_s.append(t)
            t, (added, skipped) = _timed(_load, engine, prep)
            assert (added, skipped) == (0, n), (added, skipped, n)
            reload_s.append(t)
            _empty(engine)
            t, _ = _timed(_write_only, engine, prep, samples)
            write_s.append(t)
            _empty(engine)
            cli_s.append(_cli_load(engine))
        with engine.connect() as conn:
            count = conn.scalar(text("SELECT count(*) FROM signdb.images"))
            total = conn.scalar(text("SELECT pg_total_relation_size('signdb.images')"))
            heap = conn.scalar(
                text("SELECT pg_table_size('signdb.images')")  # heap + TOAST, no indexes
            )
            raw = conn.scalar(text("SELECT avg(octet_length(pixels)) FROM signdb.images"))
            stored = conn.scalar(text("SELECT avg(pg_column_size(pixels)) FROM signdb.images"))

    decode_rate = n / statistics.median(decode_s)
    load_rate = n / statistics.median(load_s)
    ratio = load_rate / decode_rate

    def runs(times: list[float]) -> str:
        return "runs " + " ".join(f"{t:.2f}s" for t in times)

    return [
        {"metric": "images", "value": n, "unit": "images", "detail": str(dataset_dir())},
        {"metric": "decode only", "value": decode_rate, "unit": "images/s",
         "detail": f"iter_samples, {WORKERS} workers; {runs(decode_s)}"},
        {"metric": "full load", "value": load_rate, "unit": "images/s",
         "detail": f"decode + COPY + commit per batch; {runs(load_s)}"},
        {"metric": "database writes only", "value": n / statistics.median(write_s),
         "unit": "images/s", "detail": f"load_samples of decoded images; {runs(write_s)}"},
        {"metric": "load / decode", "value": round(ratio, 3), "unit": "ratio",
         "detail": f"goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'NOT met'}"},
        {"metric": "load / decode, best of 3", "value": round(min(decode_s) / min(load_s), 3),
         "unit": "ratio", "detail": "fastest runs: least disturbed by other processes"},
        {"metric": "signdb load, end to end", "value": statistics.median(cli_s), "unit": "s",
         "detail": f"the console script in a fresh process, start-up included; {runs(cli_s)}"},
        {"metric": "re-load (dedup path)", "value": statistics.median(reload_s), "unit": "s",
         "detail": f"adds 0 of {n}; {runs(reload_s)}"},
        {"metric": "stored bytes per image", "value": total / count, "unit": "bytes",
         "detail": "pg_total_relation_size('signdb.images') / count (heap, TOAST, indexes)"},
        {"metric": "table bytes per image", "value": heap / count, "unit": "bytes",
         "detail": "pg_table_size: heap + TOAST, without indexes"},
        {"metric": "pixel bytes per image", "value": float(stored), "unit": "bytes",
         "detail": f"pg_column_size(pixels) after TOAST compression; raw {float(raw):.0f}"},
    ]  # fmt: skip
