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
from signdb.tracking.lease import RankLease
from signdb.tracking.pool import ImagePool
from signdb.tracking.provenance import code_version
from signdb.tracking.ranks import JoinedRun
from signdb.tracking.run import Run
from signdb.tracking.standby import pick_standby


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
    world_size: int = 1,
    launch_key: str | None = None,
    standbys: Sequence[Engine] = (),
) -> Run:
    """Create a run (status running) with its split assignment; enter the result to use it.

    ``pool`` serves the run's pixels from memory (a sweep worker's one read of
    the dataset); ``trial`` records the run as one repeat of a sweep's trial.
    ``status="queued"`` creates a run for a worker to train (no process owns it
    yet); ``on_create(session, run_id)`` runs in the creating transaction, after
    every check (a submitted run's job is enqueued there).
    ``world_size`` > 1 makes this process rank 0 of a distributed run, which
    the other ranks open with :func:`join_run`; ``launch_key`` names the launch
    (see :func:`signdb.store.runs.run_of_launch`). ``standbys`` are hot
    standbys to read images from (:mod:`signdb.tracking.standby`).
    """
    check_world_size(world_size)
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
        if launch_key is not None:
            run_store.release_launch(session, launch_key)
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
            world_size=world_size,
            launch_key=launch_key,
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
        standby=pick_standby(standbys, run_id),
        lease=RankLease(engine, run_id, 0, world_size) if world_size > 1 else None,
    )


def check_world_size(world_size: object) -> int:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise InvalidArgument(f"world_size must be a number of processes >= 1, got {world_size!r}")
    return world_size


def join_run(
    engine: Engine,
    run_id: int,
    *,
    rank: int,
    world_size: int,
    cache: str = "auto",
    signals: str = "raise",
    standbys: Sequence[Engine] = (),
) -> JoinedRun:
    """Open run ``run_id``, which rank 0 started (or resumed) for ``world_size`` processes,
    as rank ``rank``: the run's data to read, and no writes (see :class:`JoinedRun`)."""
    check_world_size(world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < world_size:
        raise InvalidArgument(
            f"a joining rank is 1 .. world_size - 1 (rank 0 starts the run), got rank {rank!r} "
            f"of {world_size}"
        )
    with transaction(engine, f"joining run {run_id}") as session:
        record = run_store.get_run(session, run_id)
        ds = ds_store.get_dataset(session, record.dataset)
    if record.stored_status != "running":
        raise InvalidArgument(
            f"run {run_id} is {record.stored_status}; rank 0 must start (or resume) it before "
            "the other ranks join"
        )
    if record.world_size != world_size:
        raise InvalidArgument(
            f"run {run_id} was started for {record.world_size} processes, not {world_size}; "
            "launch every rank with the same world size"
        )
    return JoinedRun(
        engine,
        record,
        ds.preprocessing.shape,
        cache=cache,
        signals=signals,
        standby=pick_standby(standbys, run_id, rank),
        lease=RankLease(engine, run_id, rank, world_size),
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
    world_size: int = 1,
    standbys: Sequence[Engine] = (),
) -> tuple[Run, int, dict | None]:
    """Take over a stopped run at its last checkpoint: (run, step, that checkpoint's tensors).

    What it recorded after the checkpoint is discarded, so the resumed run
    writes every step's metrics exactly once. ``world_size`` is how many
    processes go on with it (this one rank 0), whatever trained it before.
    """
    check_world_size(world_size)
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
        run_store.mark_resumed(session, run_id, os.getpid(), socket.gethostname(), world_size)
        record = run_store.get_run(session, run_id)
    run = Run(
        engine,
        record,
        ds.preprocessing.shape,
        cache=cache,
        signals=signals,
        resume_hint=resume_hint,
        standby=pick_standby(standbys, run_id),
        lease=RankLease(engine, run_id, 0, world_size) if world_size > 1 else None,
    )
    return run, step, tensors
