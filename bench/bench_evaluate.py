"""Evaluation time: the paper's run (logreg, 0 vs 1) with 101 thresholds, and a 10-class MLP
run, each with the default 1,000 bootstrap resamples and without (``--bootstrap 0``).
Everything an evaluation writes is timed: predictions with their vectors, TP/FP/TN/FN
rows, 18 scores with intervals, the per-class curves and the calibration bins. Goal: < 2 s
for the 10-class run with 1,000 resamples. Medians of REPEATS.

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
REPEATS = 5
GOAL_S = 2.0


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
    for label, run_id in (("paper's logreg 0 vs 1, 101 thresholds", seed), ("mlp 10 classes", mlp)):
        for bootstrap in (1000, 0):
            times, result = [], None
            for _ in range(REPEATS):
                started = time.perf_counter()
                result = evaluate(engine, run_id, thresholds="0:1:0.01", bootstrap=bootstrap)
                times.append(time.perf_counter() - started)
            median = statistics.median(times)
            goal = label.startswith("mlp") and bootstrap
            rows.append(
                {
                    "benchmark": f"evaluate {label}",
                    "bootstrap": bootstrap,
                    "images": result.predictions,
                    "evaluation_rows": result.rows,
                    "median_s": round(median, 3),
                    "min_s": round(min(times), 3),
                    "goal_s": GOAL_S if goal else None,
                    "ok": median < GOAL_S if goal else None,
                    "accuracy": round(result.accuracy, 4),
                    "accuracy_ci": _interval(result.scores["accuracy"]),
                    "f1": round(result.f1, 4),
                }
            )
    return rows


def _interval(score: dict) -> str:
    if score["ci_low"] is None:
        return ""
    return f"{score['ci_low']:.3f}-{score['ci_high']:.3f}"


if __name__ == "__main__":
    for row in run():
        print(row)
