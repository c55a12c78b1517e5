"""Evaluation time: the seed run with 101 thresholds, and a 10-class MLP run.

Works in a scratch database ``signdb_bench_eval`` on the configured (default:
embedded) server, dropped afterwards; the full shared dataset is loaded into it.
"""

from __future__ import annotations

import statistics
import time

from sqlalchemy import Engine

from bench._scratch import scratch_engine
from signdb import training
from signdb.config import dataset_dir
from signdb.data.preprocess import Preprocessing
from signdb.evaluation import evaluate
from signdb.loading import load_dataset

SCRATCH = "signdb_bench_eval"
REPEATS = 3


def run() -> list[dict]:
    with scratch_engine(SCRATCH) as engine:
        return _measure(engine)


def _measure(engine: Engine) -> list[dict]:
    load_dataset(engine, dataset_dir(), "digits", Preprocessing())
    seed = training.train(engine, training.TrainSpec(dataset="digits")).run_id
    mlp = training.train(
        engine,
        training.TrainSpec(
            dataset="digits", model="mlp", classes=None, hyperparams={"iterations": 3}
        ),
    ).run_id
    rows = []
    for label, run_id in (("seed logreg 0 vs 1, 101 thresholds", seed), ("mlp 10 classes", mlp)):
        times, result = [], None
        for _ in range(REPEATS):
            started = time.perf_counter()
            result = evaluate(engine, run_id, thresholds="0:1:0.01")
            times.append(time.perf_counter() - started)
        rows.append(
            {
                "benchmark": f"evaluate {label}",
                "images": result.predictions,
                "evaluation_rows": result.rows,
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "accuracy": round(result.accuracy, 4),
                "f1": round(result.f1, 4),
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
