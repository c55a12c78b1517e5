"""Train a model on images streamed from PostgreSQL, logging everything back.

Batches come from a SQLAlchemy streaming select (server-side cursor,
``yield_per``); pixels are decoded with ``np.frombuffer``. With ``cache`` the
decoded training set is kept in memory when it fits a budget. Both paths feed
the model the same batches in the same order, so they produce identical
weights: full-batch models see images ordered by id, mini-batch models by
``md5(sha256:seed:epoch)``, computed by PostgreSQL when streaming and by
hashlib when cached.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

import signdb
from signdb.db.engine import transaction, translate_errors
from signdb.errors import InvalidArgument, SignDBError, TrainingError
from signdb.ml import build_model
from signdb.ml.base import Classifier
from signdb.store import datasets as ds_store
from signdb.store import runs as run_store
from signdb.store import weights as weight_store
from signdb.tracking import RunTracker

CACHE_BUDGET_BYTES = 1 << 30
CHECKPOINT_SECONDS = 10.0
EVAL_CHUNK = 512


@dataclass
class TrainConfig:
    dataset: str
    model: str = "logreg"
    classes: list[int] | None = field(default_factory=lambda: [0, 1])  # None: every label
    hyperparams: dict[str, Any] = field(default_factory=dict)  # only what the user set
    seed: int = 42
    test_fraction: float = 0.15
    name: str | None = None
    cache: str = "auto"
    eval_every: int | None = None
    checkpoint_every: int | None = None


@dataclass
class TrainResult:
    run_id: int
    status: str
    train_accuracy: float | None
    test_accuracy: float | None
    steps: int
    final_cost: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "steps": self.steps,
            "final_cost": self.final_cost,
        }


Progress = Callable[[int, int, float], None]  # (step, total_steps, cost)


_SELECT = (
    "SELECT i.pixels, i.label, i.sha256 FROM signdb.run_images ri "
    "JOIN signdb.images i ON i.id = ri.image_id "
    "WHERE ri.run_id = :run AND ri.split = :split "
)
_BY_ID = text(_SELECT + "ORDER BY i.id")
_SHUFFLED = text(
    _SELECT
    + "ORDER BY md5(i.sha256 || ':' || CAST(:seed AS text) || ':' || CAST(:epoch AS text)), i.id"
)


# -- data -----------------------------------------------------------------------------
def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]: the one conversion every path uses."""
    return pixels.astype(np.float32) / np.float32(255.0)


def order_key(sha256: str, seed: int, epoch: int) -> str:
    """Python twin of the SQL ``md5(sha256 || ':' || seed || ':' || epoch)``."""
    return hashlib.md5(f"{sha256}:{seed}:{epoch}".encode(), usedforsecurity=False).hexdigest()


class RunData:
    """The run's train and test images, streamed from PostgreSQL or cached."""

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        shape: tuple[int, int, int],
        classes: list[int],
        seed: int,
        cache: str,
    ) -> None:
        if cache not in ("auto", "on", "off"):
            raise InvalidArgument(f"--cache must be auto, on or off, got {cache!r}")
        self.engine = engine
        self.run_id = run_id
        self.shape = shape
        self.classes = np.asarray(classes)
        self.seed = seed
        with transaction(engine) as session:
            counts = dict(
                session.execute(
                    text(
                        "SELECT split, count(*) FROM signdb.run_images WHERE run_id = :r GROUP BY split"
                    ),
                    {"r": run_id},
                ).all()
            )
        self.sizes = {"train": counts.get("train", 0), "test": counts.get("test", 0)}
        need = sum(self.sizes.values()) * int(np.prod(shape))
        self.cached = cache == "on" or (cache == "auto" and need <= CACHE_BUDGET_BYTES)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        self._full_batch: tuple[np.ndarray, np.ndarray] | None = None

    # Streaming ---------------------------------------------------------------
    def _stream(
        self, split: str, chunk: int, epoch: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Rows in id order, or shuffled for ``epoch`` (then ``chunk`` is the batch size)."""
        query = _SHUFFLED if epoch is not None else _BY_ID
        params = {"run": self.run_id, "split": split, "seed": self.seed, "epoch": epoch or 0}
        with translate_errors(self.engine), self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(
                query, params
            )
            for rows in result.partitions(chunk):
                pixels = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8)
                labels = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
                yield pixels.reshape(len(rows), *self.shape), labels, [r[2] for r in rows]

    def _load_cache(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if split not in self._cache:
            parts = list(self._stream(split, 1024))
            if parts:
                pixels = np.concatenate([p[0] for p in parts])
                labels = np.concatenate([p[1] for p in parts])
                shas = [s for p in parts for s in p[2]]
            else:
                pixels, labels, shas = (
                    np.zeros((0, *self.shape), np.uint8),
                    np.zeros(0, np.int64),
                    [],
                )
            self._cache[split] = (pixels, labels, shas)
        return self._cache[split]

    def _index(self, labels: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.classes, labels)

    # Public ------------------------------------------------------------------
    def steps_per_epoch(self, batch_size: int | None) -> int:
        n = self.sizes["train"]
        if not batch_size or batch_size >= n:
            return 1
        return -(-n // batch_size)

    def epoch_batches(
        self, epoch: int, batch_size: int | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X float32, y class indices) for each step of one epoch."""
        n = self.sizes["train"]
        full = not batch_size or batch_size >= n
        if self.cached:
            pixels, labels, shas = self._load_cache("train")
            if full:
                # Full-batch models see the same array every step: convert it once.
                if self._full_batch is None:
                    self._full_batch = (to_float(pixels), self._index(labels))
                yield self._full_batch
                return
            order = sorted(range(n), key=lambda i: (order_key(shas[i], self.seed, epoch), i))
            for start in range(0, n, batch_size):
                idx = np.asarray(order[start : start + batch_size])
                yield to_float(pixels[idx]), self._index(labels[idx])
            return
        if full:
            parts = list(self._stream("train", 1024))
            pixels = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            yield to_float(pixels), self._index(labels)
            return
        # yield_per == batch_size: at most one batch (plus the driver's buffer) in memory.
        for pixels, labels, _ in self._stream("train", batch_size, epoch=epoch):
            yield to_float(pixels), self._index(labels)

    def iter_split(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (X, y index) covering a split once, for evaluation."""
        if self.cached:
            pixels, labels, _ = self._load_cache(split)
            for start in range(0, len(pixels), EVAL_CHUNK):
                yield (
                    to_float(pixels[start : start + EVAL_CHUNK]),
                    self._index(labels[start : start + EVAL_CHUNK]),
                )
            return
        for pixels, labels, _ in self._stream(split, EVAL_CHUNK):
            yield to_float(pixels), self._index(labels)

    def accuracy(self, model: Classifier, split: str) -> float | None:
        correct = total = 0
        for X, y in self.iter_split(split):
            correct += int(np.count_nonzero(np.argmax(model.predict_proba(X), axis=1) == y))
            total += len(y)
        return correct / total if total else None


# -- run setup ----------------------------------------------------------------------
@lru_cache(maxsize=1)
def code_version() -> str:
    version = f"signdb {signdb.__version__}"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(signdb.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if sha.returncode == 0 and sha.stdout.strip():
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=Path(signdb.__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            version += f" ({sha.stdout.strip()}{'-dirty' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _validate(session, config: TrainConfig) -> tuple[Any, list[int], Classifier]:
    from signdb.data.splits import check_fraction

    if config.name is not None:
        ds_store.check_name(config.name, "run name")
    check_fraction(config.test_fraction)
    dataset = ds_store.get_dataset(session, config.dataset)
    labels = ds_store.label_counts(session, dataset.id)
    classes = sorted(labels) if config.classes is None else list(config.classes)
    missing = [c for c in classes if c not in labels]
    if missing:
        raise InvalidArgument(
            f"class {missing[0]} is not in dataset {config.dataset!r}, whose labels are "
            f"{', '.join(map(str, sorted(labels)))}; pass e.g. --classes 0,1"
        )
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise InvalidArgument(f"--classes needs at least two distinct labels, got {classes}")
    model = build_model(config.model, seed=config.seed, **config.hyperparams)
    model.initialize(dataset.preprocessing.shape, sorted(classes))  # validates hyperparameters
    splits = ds_store.split_counts(session, dataset.id, config.seed, config.test_fraction)
    for split in ("train", "test"):
        if sum(splits[split].get(c, 0) for c in classes) == 0:
            raise InvalidArgument(
                f"the {split} split of {config.dataset!r} for classes {classes} is empty with "
                f"--test-fraction {config.test_fraction} --seed {config.seed}; load more images "
                "or change the fraction"
            )
    return dataset, sorted(classes), model


def train(engine: Engine, config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Validate, create the run row, train, and record the outcome."""
    with transaction(engine) as session:
        dataset, classes, model = _validate(session, config)
        run_id = run_store.create_run(
            session,
            dataset_id=dataset.id,
            name=config.name,
            model=config.model,
            classes=classes,
            hyperparams={
                **model.get_params(),
                "cache": config.cache,
                "eval_every": config.eval_every,
                "checkpoint_every": config.checkpoint_every,
            },
            seed=config.seed,
            test_fraction=config.test_fraction,
            code_version=code_version(),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        run_store.assign_images(session, run_id, dataset.id, classes)
    data = RunData(engine, run_id, dataset.preprocessing.shape, classes, config.seed, config.cache)
    return _run_loop(engine, run_id, model, data, start_step=0, config=config, progress=progress)


def resume(engine: Engine, run_id: int, progress: Progress | None = None) -> TrainResult:
    """Continue an interrupted or failed run from its last checkpoint."""
    with transaction(engine) as session:
        run = run_store.get_run(session, run_id)
        if run.status == "succeeded":
            raise InvalidArgument(f"run {run_id} already succeeded; nothing to resume")
        if run.status == "running":
            raise InvalidArgument(
                f"run {run_id} is still running (heartbeat {run.heartbeat_at}); stop it first, "
                "or wait until its heartbeat goes stale"
            )
        dataset = ds_store.get_dataset(session, run.dataset)
        hp = dict(run.hyperparams)
        config = TrainConfig(
            dataset=run.dataset,
            model=run.model,
            classes=run.classes,
            seed=run.seed,
            test_fraction=run.test_fraction,
            name=run.name,
            cache=hp.pop("cache", "auto"),
            eval_every=hp.pop("eval_every", None),
            checkpoint_every=hp.pop("checkpoint_every", None),
        )
        hp.pop("seed", None)
        model = build_model(run.model, seed=run.seed, **hp)
        model.initialize(dataset.preprocessing.shape, run.classes)
        step = weight_store.latest_step(session, run_id)
        if step is not None:
            _, tensors = weight_store.load_tensors(session, run_id, step)
            model.load_state_dict(tensors)
        step = step or 0
        weight_store.discard_after(session, run_id, step)
        run_store.mark_resumed(session, run_id, os.getpid(), socket.gethostname())
    data = RunData(engine, run_id, dataset.preprocessing.shape, run.classes, run.seed, config.cache)
    return _run_loop(engine, run_id, model, data, start_step=step, config=config, progress=progress)


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps."""
    received: dict[str, int] = {}

    def handler(signum: int, _frame: object) -> None:
        received["signal"] = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Interrupted(TrainingError):
    pass


def _run_loop(
    engine: Engine,
    run_id: int,
    model: Classifier,
    data: RunData,
    *,
    start_step: int,
    config: TrainConfig,
    progress: Progress | None,
) -> TrainResult:
    tracker = RunTracker(engine, run_id)
    batch_size = None if model.full_batch else model.batch_size
    per_epoch = data.steps_per_epoch(batch_size)
    total = model.iterations * per_epoch
    eval_every = config.eval_every or max(1, total // 20)
    checkpoint_every = config.checkpoint_every or max(1, total // 10)
    step = start_step
    cost = float("nan")
    last_checkpoint = time.monotonic()
    try:
        with tracker.heartbeat(), _stop_on_signals() as received:
            if step == 0:
                with transaction(engine) as session:
                    run_store.record_progress(session, run_id, steps_done=0, total_steps=total)
            for epoch in range(step // per_epoch, model.iterations):
                skip = step - epoch * per_epoch  # resuming mid-epoch
                for i, (X, y) in enumerate(data.epoch_batches(epoch, batch_size)):
                    if i < skip:
                        continue
                    if step % eval_every == 0:
                        tracker.metrics.log(step, "test_accuracy", data.accuracy(model, "test"))
                    cost = model.train_step(X, y, step)
                    tracker.metrics.log(step, "cost", cost)
                    correct = model.last_batch_correct_
                    if correct is not None:
                        tracker.metrics.log(step, "train_accuracy", correct / len(y))
                    step += 1
                    if progress:
                        progress(step, total, cost)
                    if received:
                        tracker.checkpoint(step, model.state_dict(), total_steps=total)
                        tracker.interrupt()
                        raise Interrupted(
                            f"run {run_id} interrupted at step {step} of {total}; "
                            f"resume with `signdb train --resume {run_id}`"
                        )
                    due = step % checkpoint_every == 0 and step < total
                    # The default schedule also waits CHECKPOINT_SECONDS between
                    # checkpoints, so short steps do not spend their time writing weights.
                    if due and (
                        config.checkpoint_every
                        or time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS
                    ):
                        tracker.checkpoint(step, model.state_dict(), total_steps=total)
                        last_checkpoint = time.monotonic()
            train_acc = data.accuracy(model, "train")
            test_acc = data.accuracy(model, "test")
            tracker.metrics.log(total, "test_accuracy", test_acc)
            tracker.checkpoint(total, model.state_dict(), final=True, total_steps=total)
            tracker.succeed(train_accuracy=train_acc, test_accuracy=test_acc)
    except Interrupted:
        raise
    except BaseException as e:
        tracker.fail(e)
        if isinstance(e, SignDBError):
            raise
        if isinstance(e, KeyboardInterrupt):
            raise
        raise TrainingError(f"run {run_id} failed at step {step}: {type(e).__name__}: {e}") from e
    return TrainResult(run_id, "succeeded", train_acc, test_acc, total, cost)


def load_model(engine: Engine, run_id: int) -> tuple[run_store.Run, Classifier]:
    """Rebuild a run's model from its final (or latest) stored weights."""
    with transaction(engine) as session:
        run = run_store.get_run(session, run_id)
        dataset = ds_store.get_dataset(session, run.dataset)
        hp = {
            k: v
            for k, v in run.hyperparams.items()
            if k not in ("cache", "eval_every", "checkpoint_every", "seed")
        }
        model = build_model(run.model, seed=run.seed, **hp)
        model.initialize(dataset.preprocessing.shape, run.classes)
        step = weight_store.latest_step(session, run_id, final_only=True)
        if step is None:
            raise InvalidArgument(
                f"run {run_id} has no final weights (status {run.status}); "
                f"finish it with `signdb train --resume {run_id}`"
            )
        _, tensors = weight_store.load_tensors(session, run_id, step)
        model.load_state_dict(tensors)
    return run, model
