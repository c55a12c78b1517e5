"""Opening a run: validate, create its row and split assignment in one transaction, or reopen it.

Nothing is written for a bad request: the dataset, the classes, the fractions
and the seed are checked, and the split is computed and checked for empty
sides, in the same transaction that creates the run row.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from signdb.data.splits import check_fraction
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.store import datasets as ds_store
from signdb.store import metrics as metric_store
from signdb.store import runs as run_store
from signdb.store import weights as weight_store
from signdb.tracking.provenance import code_version
from signdb.tracking.run import Run


def resolve_classes(
    requested: Sequence[int] | None, labels: dict[int, int], dataset: str
) -> list[int]:
    """The run's classes, sorted: ``None`` means every label of the dataset."""
    classes = sorted(labels) if requested is None else list(requested)
    missing = [c for c in classes if c not in labels]
    if missing:
        raise InvalidArgument(
            f"class {missing[0]} is not in dataset {dataset!r}, whose labels are "
            f"{', '.join(map(str, sorted(labels)))}; pass e.g. --classes 0,1"
        )
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise InvalidArgument(f"--classes needs at least two distinct labels, got {classes}")
    return sorted(classes)


def start_run(
    engine: Engine,
    *,
    dataset: str,
    model: str,
    classes: Sequence[int] | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 42,
    test_fraction: float = 0.15,
    name: str | None = None,
    engine_name: str = "external",
    trainer: dict[str, Any] | None = None,
    cache: str = "auto",
    signals: str = "raise",
    resume_hint: str | None = None,
) -> Run:
    """Create a run (status running) with its split assignment; enter the result to use it."""
    if name is not None:
        ds_store.check_name(name, "run name")
    if not isinstance(model, str) or not model.strip():
        raise InvalidArgument(f"model must be a non-empty name, got {model!r}")
    check_fraction(test_fraction)
    ds_store.check_seed(seed)
    with transaction(engine, "starting a run") as session:
        ds = ds_store.get_dataset(session, dataset)
        labels = ds_store.label_counts(session, ds.id)
        run_classes = resolve_classes(classes, labels, dataset)
        splits = ds_store.split_counts(session, ds.id, seed, test_fraction)
        for split in ("train", "test"):
            if sum(splits[split].get(c, 0) for c in run_classes) == 0:
                raise InvalidArgument(
                    f"the {split} split of {dataset!r} for classes {run_classes} is empty with "
                    f"--test-fraction {test_fraction} --seed {seed}; load more images or "
                    "change the fraction"
                )
        run_id = run_store.create_run(
            session,
            dataset_id=ds.id,
            name=name,
            model=model,
            classes=run_classes,
            hyperparams=dict(params or {}),
            trainer=dict(trainer or {}),
            engine=engine_name,
            seed=seed,
            test_fraction=test_fraction,
            code_version=code_version(),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        run_store.assign_images(session, run_id, ds.id, run_classes)
        record = run_store.get_run(session, run_id)
    return Run(
        engine,
        record,
        ds.preprocessing.shape,
        cache=cache,
        signals=signals,
        resume_hint=resume_hint,
    )


def reopen_run(
    engine: Engine,
    run_id: int,
    *,
    cache: str = "auto",
    signals: str = "flag",
    resume_hint: str | None = None,
) -> tuple[Run, int, dict | None]:
    """Take over a stopped run at its last checkpoint: (run, step, that checkpoint's tensors).

    What it recorded after the checkpoint is discarded, so the resumed run
    writes every step's metrics exactly once.
    """
    with transaction(engine, f"resuming run {run_id}") as session:
        record = run_store.get_run(session, run_id)
        if record.status == "succeeded":
            raise InvalidArgument(f"run {run_id} already succeeded; nothing to resume")
        if record.status == "running":
            raise InvalidArgument(
                f"run {run_id} is still running (heartbeat {record.heartbeat_at}); stop it "
                "first, or wait until its heartbeat goes stale"
            )
        ds = ds_store.get_dataset(session, record.dataset)
        step = weight_store.latest_step(session, run_id)
        tensors = None
        if step is not None:
            _, tensors = weight_store.load_tensors(session, run_id, step)
        step = step or 0
        metric_store.discard_from(session, run_id, step)
        weight_store.discard_after(session, run_id, step)
        run_store.mark_resumed(session, run_id, os.getpid(), socket.gethostname())
        record = run_store.get_run(session, run_id)
    run = Run(
        engine,
        record,
        ds.preprocessing.shape,
        cache=cache,
        signals=signals,
        resume_hint=resume_hint,
    )
    return run, step, tensors
