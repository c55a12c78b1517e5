"""Test accuracy of signdb's models against scikit-learn, on the same split.

Every signdb figure comes from the real trainer reading PostgreSQL (a scratch
database holding the shared dataset). scikit-learn gets the very same train
and test images, read back from the run's ``run_images`` assignment, as
pixels/255. The CNN rows are issue 13's table: seeds 42 and 7 on both engines and
seeds 1-5 on torch. ``SIGNDB_BENCH_CNN=0`` leaves the (half-hour) CNN out;
``SIGNDB_BENCH_CNN=full`` adds seeds 1-5 on the numpy engine (another 40 minutes).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np
from sqlalchemy import text

from bench._progress import note
from bench._scratch import scratch_engine
from signdb import config, training
from signdb.data.preprocess import Preprocessing
from signdb.loading import load_dataset

DATASET = "sld"
# (name, model, classes, engine, seed): every model at its defaults
EXPERIMENTS = [
    ("paper's logreg, 0 vs 1", "logreg", [0, 1], "numpy", 42),
    ("softmax, 0 vs 1", "softmax", [0, 1], "numpy", 42),
    ("mlp, 0 vs 1", "mlp", [0, 1], "numpy", 42),
    ("softmax, 10 digits", "softmax", None, "numpy", 42),
    ("mlp, 10 digits", "mlp", None, "numpy", 42),
    ("mlp, 10 digits, seed 1", "mlp", None, "numpy", 1),
]
CNN_SEEDS = (42, 7, 1, 2, 3, 4, 5)


def cnn_experiments(level: str) -> list[tuple[str, str, list[int] | None, str, int]]:
    """Issue 13's accuracy table: torch on every seed, numpy on 42 and 7 (all with "full")."""
    if level == "0":
        return []
    rows = [("cnn, 0 vs 1", "cnn", [0, 1], "torch", 42)]
    for engine in ("torch", "numpy"):
        seeds = CNN_SEEDS if engine == "torch" or level == "full" else CNN_SEEDS[:2]
        rows += [(f"cnn {engine}, 10 digits, seed {s}", "cnn", None, engine, s) for s in seeds]
    return rows


def _split_arrays(engine, run_id: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's own train and test images (the trainer's read path), flattened for sklearn."""
    from signdb.tracking import RunData
    from signdb.training import load_model

    run, model = load_model(engine, run_id)
    data = RunData(engine, run_id, model.input_shape_, run.classes, run.seed, "off")
    out = {}
    for split in ("train", "test"):
        arrays = data.split(split)
        X = arrays.pixels.reshape(len(arrays.labels), -1).astype(np.float64) / 255.0
        out[split] = (X, arrays.labels)
    return out


def _sklearn(engine, run_id: int, label: str) -> list[dict[str, Any]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    data = _split_arrays(engine, run_id)
    (Xtr, ytr), (Xte, yte) = data["train"], data["test"]
    rows = []
    for name, est in [
        ("scikit-learn LogisticRegression", LogisticRegression(max_iter=1000)),
        ("scikit-learn MLPClassifier(128)", MLPClassifier((128,), max_iter=300, random_state=42)),
    ]:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xtr, ytr)
        rows.append(
            {
                "benchmark": "accuracy",
                "experiment": f"{name}, {label}",
                "test_accuracy": float((est.predict(Xte) == yte).mean()),
                "train_seconds": time.perf_counter() - started,
                "test_images": len(yte),
            }
        )
    return rows


def run() -> list[dict[str, Any]]:
    experiments = EXPERIMENTS + cnn_experiments(os.environ.get("SIGNDB_BENCH_CNN", "1"))
    rows: list[dict[str, Any]] = []
    with scratch_engine("signdb_bench_accuracy") as engine:
        load_dataset(engine, config.dataset_dir(), DATASET, Preprocessing())
        reference_runs: dict[str, int] = {}
        for i, (name, model, classes, engine_name, seed) in enumerate(experiments, 1):
            note(f"training {name} ({i} of {len(experiments)})")
            started = time.perf_counter()
            result = training.train(
                engine,
                training.TrainSpec(
                    dataset=DATASET, model=model, classes=classes, seed=seed, engine=engine_name
                ),
            )
            seconds = time.perf_counter() - started
            with engine.connect() as conn:
                n_train = conn.execute(
                    text("SELECT train_size FROM signdb.runs WHERE id = :r"), {"r": result.run_id}
                ).scalar()
            rows.append(
                {
                    "benchmark": "accuracy",
                    "experiment": f"signdb {name}",
                    "engine": engine_name,
                    "seed": seed,
                    "test_accuracy": result.test_accuracy,
                    "train_seconds": seconds,
                    "train_images": n_train,
                    "run_id": result.run_id,
                }
            )
            if seed == 42 and model == "softmax":
                reference_runs.setdefault("0 vs 1" if classes else "10 digits", result.run_id)
        for label, run_id in reference_runs.items():
            note(f"scikit-learn on the same images, {label}")
            rows += _sklearn(engine, run_id, label)
    return rows
