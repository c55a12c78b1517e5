"""Datasets people bring: RGB images under named class folders, and Hugging Face Parquet.

Both are built here from the shared Sign Language Digits photos, so no dataset
is committed: each photo becomes a 100x100 RGB PNG with a random colour cast
(per image, so colour says nothing about the class) in a folder named after its
digit (``zero`` ... ``nine``). The same pictures are then written as Hugging
Face Parquet by Hugging Face's own ``datasets`` package, with a ``ClassLabel``
feature and ``train``/``test`` shard names, which fixes the split. Each is
loaded at 64x64 RGB through the loader the CLI uses, trained with the default
models (the CNN on the torch engine when it is installed; the Parquet copy
only with softmax) and evaluated with bootstrap intervals.
``SIGNDB_BENCH_CNN=0`` leaves the CNN out.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench._progress import note
from bench._scratch import scratch_engine
from signdb import config, training
from signdb.data.preprocess import Preprocessing
from signdb.evaluation import evaluate
from signdb.loading import load_dataset

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SIDE = 100


def _tinted(path: Path, rng: np.random.Generator) -> Image.Image:
    gray = np.asarray(Image.open(path).convert("L").resize((SIDE, SIDE)), dtype=np.float32)
    cast = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
    return Image.fromarray((gray[..., None] * cast).clip(0, 255).astype(np.uint8), "RGB")


def build_named_rgb(source: Path, out: Path) -> list[tuple[Image.Image, int]]:
    """Write ``out/<name>/*.png`` and return the pictures with their labels."""
    rng = np.random.default_rng(0)
    pictures = []
    for label, name in enumerate(NAMES):
        (out / name).mkdir(parents=True)
        for i, path in enumerate(sorted((source / str(label)).glob("*.JPG"))):
            image = _tinted(path, rng)
            image.save(out / name / f"{name}-{i:03d}.png")
            pictures.append((image, label))
    return pictures


def build_parquet(pictures: list[tuple[Image.Image, int]], out: Path) -> None:
    """Hugging Face Parquet shards ``train-…`` and ``test-…``, every seventh picture to test."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=NAMES)})
    out.mkdir(parents=True)
    for split, keep in (("train", lambda i: i % 7 != 0), ("test", lambda i: i % 7 == 0)):
        chosen = [p for i, p in enumerate(pictures) if keep(i)]
        data = {"image": [im for im, _ in chosen], "label": [lab for _, lab in chosen]}
        Dataset.from_dict(data, features=features).to_parquet(
            str(out / f"{split}-00000-of-00001.parquet")
        )


def _experiments(dataset: str) -> list[tuple[str, str]]:
    if dataset == "rgb-parquet":  # the same pictures: one model shows the format end to end
        return [("softmax", "numpy")]
    rows = [("softmax", "numpy"), ("mlp", "numpy")]
    if os.environ.get("SIGNDB_BENCH_CNN", "1") != "0":
        try:
            import torch  # noqa: F401
        except ImportError:
            rows.append(("cnn", "numpy"))
        else:
            rows.append(("cnn", "torch"))
    return rows


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, scratch_engine("signdb_bench_datasets") as engine:
        note("building a named-class RGB folder and Hugging Face Parquet from the shared photos")
        pictures = build_named_rgb(config.dataset_dir(), Path(tmp) / "rgb")
        build_parquet(pictures, Path(tmp) / "parquet")
        for dataset, path in (("rgb-folders", "rgb"), ("rgb-parquet", "parquet")):
            started = time.perf_counter()
            loaded = load_dataset(engine, Path(tmp) / path, dataset, Preprocessing(color="rgb"))
            load_seconds = time.perf_counter() - started
            for model, engine_name in _experiments(dataset):
                note(f"{dataset}: training {model} on {engine_name}")
                started = time.perf_counter()
                result = training.train(
                    engine,
                    training.TrainSpec(
                        dataset=dataset, model=model, classes=None, engine=engine_name
                    ),
                )
                seconds = time.perf_counter() - started
                scores = evaluate(engine, result.run_id).scores
                rows.append(
                    {
                        "benchmark": "datasets",
                        "dataset": dataset,
                        "images": loaded.images,
                        "classes": len(loaded.classes),
                        "load_seconds": load_seconds,
                        "model": f"{model} ({engine_name})",
                        "test_accuracy": result.test_accuracy,
                        "accuracy_95": "{ci_low:.3f}-{ci_high:.3f}".format(**scores["accuracy"]),
                        "macro_f1": scores["macro_f1"]["value"],
                        "train_seconds": seconds,
                    }
                )
    return rows
