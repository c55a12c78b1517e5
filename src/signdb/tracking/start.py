"""Opening a run: validate, create its row and split assignment in one transaction, or reopen it.

Nothing is written for a bad request: the dataset, the classes, the fractions
and the seed are checked, and the split is computed and checked for empty
sides, in the same transaction that creates the run row.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from signdb.data.splits import SplitPlan, check_fractions, check_mode, plan_split
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.store import datasets as ds_store
from signdb.store import metrics as metric_store
from signdb.store import runs as run_store
from signdb.store import sweeps as sweep_store
from signdb.store import weights as weight_store
from signdb.tracking.pool import ImagePool
from signdb.tracking.provenance import code_version
from signdb.tracking.run import Run


@dataclass(frozen=True)
class TrialLink:
    """A run's place in a sweep: repeat ``repeat`` of trial ``number``."""

    sweep: str
    number: int
    repeat: int


def run_classes(
    requested: Sequence[int | str] | None,
    names: dict[int, str],
    labels: dict[int, int],
    dataset: str,
) -> list[int]:
    """The run's labels, sorted. ``requested`` holds names or labels; None means every class.

    A class is found by name first, then by label, so ``--classes cat,dog`` and
    ``--classes 0,1`` both work, and digits named "0".."9" are the same either way.
    """
    by_name = {name: label for label, name in names.items()}
    if requested is None:
        chosen = sorted(labels)
    else:
        chosen = []
        for item in requested:
            key = str(item).strip()
            if key in by_name:
                chosen.append(by_name[key])
            elif key.lstrip("-").isdigit() and int(key) in names:
                chosen.append(int(key))
            else:
                known = ", ".join(names[k] for k in sorted(names)[:12])
                raise InvalidArgument(
                    f"class {key!r} is not in dataset {dataset!r}, whose classes are {known}"
                    f"{', ...' if len(names) > 12 else ''}; pass e.g. --classes "
                    f"{','.join(names[k] for k in sorted(names)[:2])}"
                )
    empty = [names.get(c, str(c)) for c in chosen if not labels.get(c)]
    if empty:
        raise InvalidArgument(
            f"class {empty[0]!r} of dataset {dataset!r} has no images; load some or leave it out"
        )
    if len(set(chosen)) != len(chosen) or len(chosen) < 2:
        raise InvalidArgument(
            f"--classes needs at least two distinct classes, got {list(requested)}"
        )
    return sorted(chosen)


def start_run(
    engine: Engine,
    *,
    dataset: str,
    model: str,
    classes: Sequence[int | str] | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 42,
    test_fraction: float = 0.15,
    val_fraction: float = 0.0,
    split: str = "auto",
    name: str | None = None,
    engine_name: str = "external",
    trainer: dict[str, Any] | None = None,
    cache: str = "auto",
    signals: str = "raise",
    resume_hint: str | None = None,
    pool: ImagePool | None = None,
    trial: TrialLink | None = None,
    status: str = "running",
    on_create: Callable[[Session, int], None] | None = None,
) -> Run:
    """Create a run (status running) with its split assignment; enter the result to use it.

    ``pool`` serves the run's pixels from memory (a sweep worker's one read of
    the dataset); ``trial`` records the run as one repeat of a sweep's trial.
    ``status="queued"`` creates a run for a worker to train (no process owns it
    yet); ``on_create(session, run_id)`` runs in the creating transaction, after
    every check (a submitted run's job is enqueued there).
    """
    if name is not None:
        ds_store.check_name(name, "run name")
    if not isinstance(model, str) or not model.strip():
        raise InvalidArgument(f"model must be a non-empty name, got {model!r}")
    check_fractions(test_fraction, val_fraction)
    check_mode(split)
    ds_store.check_seed(seed)
    with transaction(engine, "starting a run") as session:
        ds = ds_store.get_dataset(session, dataset)
        labels = ds_store.label_counts(session, ds.id)
        chosen = run_classes(classes, ds_store.class_names(session, ds.id), labels, dataset)
        plan = _plan(session, ds.id, chosen, split, seed, test_fraction, val_fraction, dataset)
        run_id = run_store.create_run(
            session,
            dataset_id=ds.id,
            name=name,
            model=model,
            classes=chosen,
            hyperparams=dict(params or {}),
            trainer=dict(trainer or {}),
            engine=engine_name,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            split=plan.mode,
            code_version=code_version(),
            host=socket.gethostname() if status == "running" else None,
            pid=os.getpid() if status == "running" else None,
            status=status,
        )
        if trial is not None:
            sweep_store.link_run(session, run_id, trial.sweep, trial.number, trial.repeat)
        sizes = run_store.assign_images(session, run_id, ds.id, chosen, plan)
        _check_sizes(sizes, plan, dataset, chosen)  # raising rolls the run back
        if on_create is not None:
            on_create(session, run_id)
        record = run_store.get_run(session, run_id)
    return Run(
        engine,
        record,
        ds.preprocessing.shape,
        cache=cache,
        signals=signals,
        resume_hint=resume_hint,
        pool=pool,
    )


def _plan(
    session: Any,
    dataset_id: int,
    classes: list[int],
    split: str,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    dataset: str,
) -> SplitPlan:
    total, with_split, fixed_val = ds_store.fixed_split_coverage(session, dataset_id, classes)
    return plan_split(
        split,
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        images=total,
        with_split=with_split,
        fixed_val=fixed_val,
        what=f"dataset {dataset!r} for the chosen classes",
    )


def _check_sizes(sizes: dict[str, int], plan: SplitPlan, dataset: str, classes: list[int]) -> None:
    flags = (
        f"--test-fraction {plan.test_fraction} --val-fraction {plan.val_fraction} --seed {plan.seed}"
        if plan.mode == "hash"
        else "its fixed split"
    )
    wanted = ["train", "test"] + (["val"] if plan.val_fraction > 0 else [])
    for split in wanted:
        if sizes[split] == 0:
            raise InvalidArgument(
                f"the {split} split of {dataset!r} for classes {classes} is empty with {flags}; "
                "load more images or change the fractions"
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
