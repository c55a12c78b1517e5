"""One run trained by several processes with torch.distributed: who starts it, who joins it.

Under ``torchrun`` (or ``signdb train --nproc N``) every process runs
``signdb train`` with the same flags. :func:`world_from_env` reads torchrun's
environment; :func:`train_distributed` then

1. joins the process group (NCCL when the model trains on CUDA, else gloo);
2. on rank 0, validates the request and creates the run (``runs.world_size``,
   ``runs.launch_key``), or reopens it (``--resume``, or a run this same launch
   created before torchrun restarted every rank), and broadcasts its id and
   starting step; the other ranks :func:`~signdb.tracking.join_run` it and
   load the same checkpoint;
3. wraps the model in DistributedDataParallel and runs the one training loop
   on every rank (:mod:`signdb.training.loop`).

A rank that dies takes its database lock with it; the rank whose collective
operation then fails names it in the run's error (:mod:`signdb.tracking.ranks`).
A rank stuck without dying is bounded by the process group's timeout
(``$SIGNDB_DIST_TIMEOUT_SECONDS``, 300 by default).
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, RankFailed, RunInterrupted, SignDBError
from signdb.ml.base import Classifier
from signdb.store import runs as run_store
from signdb.store import weights as weight_store
from signdb.tracking import Run, join_run, reopen_run
from signdb.tracking.feed import check_global_batch
from signdb.training.loop import LoopOutcome, Progress, train_loop
from signdb.training.ranks import Ranks
from signdb.training.service import (
    TrainResult,
    _check_engine,
    _model_of,
    prepare_model,
    start_spec_run,
)
from signdb.training.spec import TrainerSettings, TrainSpec

DEFAULT_TIMEOUT_SECONDS = 300.0
RESUME_HINT = (
    "resume with `signdb train --resume {run_id} --nproc {nproc}` (any number of processes, "
    "or torchrun ... -m signdb train --resume {run_id})"
)


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int = 0
    #: Names the launch across torchrun's restarts of every rank (None: not under torchrun).
    launch_key: str | None = None
    restarted: bool = False  # torchrun restarted the ranks at least once


def world_from_env(env: Mapping[str, str] | None = None) -> World | None:
    """torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; None for a single process.

    >>> world_from_env({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "abc"})
    World(rank=1, world_size=2, local_rank=0, launch_key='torchrun:abc', restarted=False)
    >>> world_from_env({"WORLD_SIZE": "1"}) is None
    True
    """
    env = os.environ if env is None else env
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", "0"))
        restarts = int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        raise InvalidArgument(
            "RANK, WORLD_SIZE, LOCAL_RANK and TORCHELASTIC_RESTART_COUNT must be integers "
            f"(torchrun sets them), got {dict((k, env.get(k)) for k in ('RANK', 'WORLD_SIZE'))}"
        ) from None
    if size <= 1:
        return None
    if not 0 <= rank < size:
        raise InvalidArgument(f"RANK must be in 0 .. WORLD_SIZE - 1, got {rank} of {size}")
    return World(rank, size, local, _launch_key(env), restarts > 0)


def _launch_key(env: Mapping[str, str]) -> str | None:
    """torchrun's rendezvous id, or (its default, "none") the agent process on this host."""
    run_id = env.get("TORCHELASTIC_RUN_ID")
    if not run_id:
        return None
    if run_id != "none":
        return f"torchrun:{run_id}"
    agent = os.getppid()
    try:  # the agent's start time makes a reused pid a different key
        started = Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "?"
    return f"torchrun:{socket.gethostname()}:{agent}:{started}"


def timeout_seconds() -> float:
    raw = os.environ.get("SIGNDB_DIST_TIMEOUT_SECONDS", str(DEFAULT_TIMEOUT_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise InvalidArgument(f"SIGNDB_DIST_TIMEOUT_SECONDS must be seconds > 0, got {raw!r}")
    return value


def init_process_group(backend: str, env: Mapping[str, str] | None = None) -> None:
    """``torch.distributed.init_process_group(backend)`` for torchrun's ranks, restarts included.

    torchrun restarts every rank with the same ``MASTER_PORT`` and the same
    store, where the last attempt's ranks left their addresses: a restarted
    rank can read a dead peer's address and wait on it until the timeout
    (PyTorch 2.13, gloo). Each attempt's ranks therefore meet under a prefix
    of their own (``TORCHELASTIC_RESTART_COUNT``). The timeout is
    ``$SIGNDB_DIST_TIMEOUT_SECONDS``.
    """
    from signdb.ml.torchbase import require_torch

    dist = require_torch().distributed
    env = os.environ if env is None else env
    timeout = datetime.timedelta(seconds=timeout_seconds())
    if "TORCHELASTIC_RESTART_COUNT" not in env or "MASTER_ADDR" not in env:
        dist.init_process_group(backend, timeout=timeout)  # not torchrun: its env:// as given
        return
    rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
    agent = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent holds the store
    store = dist.TCPStore(
        env["MASTER_ADDR"],
        int(env["MASTER_PORT"]),
        size,
        is_master=rank == 0 and not agent,
        timeout=timeout,
    )
    attempt = dist.PrefixStore(f"signdb/attempt-{env['TORCHELASTIC_RESTART_COUNT']}", store)
    dist.init_process_group(backend, store=attempt, rank=rank, world_size=size, timeout=timeout)


def train_distributed(
    engine: Engine,
    world: World,
    spec: TrainSpec | None = None,
    *,
    resume_id: int | None = None,
    engine_name: str | None = None,
    standbys: Sequence[Engine] = (),
    progress: Progress | None = None,
) -> TrainResult:
    """Train one run as rank ``world.rank``: ``spec`` a new run, or continue ``resume_id``.

    Every rank returns the run's result; only rank 0's progress callback is called.
    """
    from signdb.ml import torchddp
    from signdb.ml.torchbase import require_torch, resolve_device

    torch = require_torch()
    dist = torch.distributed
    if spec is not None and spec.engine != "torch":
        raise InvalidArgument(
            f"training one run on {world.world_size} processes needs --engine torch "
            f"(the {spec.engine} engine trains in one process)"
        )
    device = resolve_device(spec.trainer.device if spec is not None else "auto")
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise InvalidArgument(
                f"rank {world.rank} is process {world.local_rank} of its machine, which has "
                f"{torch.cuda.device_count()} GPU(s); start one process per GPU at most "
                "(NCCL cannot share one GPU between processes), or train with --device cpu"
            )
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        run, model, step, settings = _open(engine, world, spec, resume_id, engine_name, standbys)
        ranks = Ranks(world.rank, world.world_size, model.device)
        try:
            with run:
                names: list[str | None] = [None] * world.world_size
                dist.all_gather_object(names, f"pid {os.getpid()} on {socket.gethostname()}")
                if run.lease is not None:
                    run.lease.set_peers(dict(enumerate(names)))
                torchddp.distribute(model)
                outcome: LoopOutcome = train_loop(
                    run,
                    model,
                    settings,
                    start_step=step,
                    progress=progress if world.rank == 0 else None,
                    ranks=ranks,
                )
        except Exception as e:  # noqa: BLE001 - a collective's RuntimeError too: name the rank
            if isinstance(e, RunInterrupted) or run.lease is None:
                raise
            error = str(e) if isinstance(e, SignDBError) else f"{type(e).__name__}: {e}"
            hint = RESUME_HINT.format(run_id=run.id, nproc=world.world_size)
            raise RankFailed(f"run {run.id} failed: {run.lease.explain(error)}; {hint}") from e
        return TrainResult(
            run.id,
            run.status,
            outcome.train_accuracy,
            outcome.val_accuracy,
            outcome.test_accuracy,
            outcome.steps,
            outcome.final_cost,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _open(
    engine: Engine,
    world: World,
    spec: TrainSpec | None,
    resume_id: int | None,
    engine_name: str | None,
    standbys: Sequence[Engine],
) -> tuple[Run, Classifier, int, TrainerSettings]:
    """Rank 0 starts or reopens the run and tells the others; they join it at the same step."""
    from signdb.ml.torchbase import require_torch

    dist = require_torch().distributed
    message: list[object] = [None, 0, None]  # run id, step, rank 0's error
    if world.rank == 0:
        try:
            run, model, step = _lead(engine, world, spec, resume_id, engine_name, standbys)
            message = [run.id, step, None]
        except Exception as e:  # noqa: BLE001 - whatever it is, the others must not wait for it
            error = str(e) if isinstance(e, SignDBError) else f"{type(e).__name__}: {e}"
            dist.broadcast_object_list([None, 0, error], src=0)
            raise
        dist.broadcast_object_list(message, src=0)
        return run, model, step, _settings(engine, run.id, spec)
    dist.broadcast_object_list(message, src=0)
    run_id, step, error = message
    if error is not None:
        raise RankFailed(f"rank 0 could not start the run: {error}")
    settings = _settings(engine, int(run_id), spec)
    run = join_run(
        engine,
        int(run_id),
        rank=world.rank,
        world_size=world.world_size,
        cache=settings.cache,
        signals="flag",
        standbys=standbys,
    )
    model = _model_of(run.record, run.data.shape, settings.device)
    if step:
        with transaction(engine, f"loading run {run_id}'s checkpoint at step {step}") as session:
            _, tensors = weight_store.load_tensors(session, int(run_id), int(step))
        model.load_state_dict(tensors)
    return run, model, int(step), settings


def _lead(
    engine: Engine,
    world: World,
    spec: TrainSpec | None,
    resume_id: int | None,
    engine_name: str | None,
    standbys: Sequence[Engine],
) -> tuple[Run, Classifier, int]:
    """Rank 0: the run to train and the model at its starting step."""
    if resume_id is None and world.restarted and world.launch_key is not None:
        with transaction(engine, "finding the run this launch started") as session:
            resume_id = run_store.run_of_launch(session, world.launch_key)
            if resume_id is not None:
                # torchrun stopped every rank of the last attempt before restarting them.
                run_store.fail_if_running(
                    session, resume_id, "torchrun restarted every rank of the launch"
                )
    if resume_id is None:
        if spec is None:
            raise InvalidArgument("--dataset is required (or --resume RUN_ID)")
        model = prepare_model(engine, spec)
        check_global_batch(None if model.full_batch else model.batch_size, world.world_size)
        run = start_spec_run(
            engine,
            spec,
            model,
            resume_hint=RESUME_HINT.replace("{nproc}", str(world.world_size)),
            world_size=world.world_size,
            launch_key=world.launch_key,
            standbys=standbys,
        )
        return run, model, 0
    with transaction(engine, f"reading run {resume_id}") as session:
        record = run_store.get_run(session, resume_id)
    _check_engine(record, engine_name)
    if record.engine != "torch":
        raise InvalidArgument(
            f"run {resume_id} trained on the {record.engine} engine, in one process; resume it "
            "without --nproc or torchrun"
        )
    settings = TrainerSettings.from_dict(record.trainer)
    run, step, tensors = reopen_run(
        engine,
        resume_id,
        cache=settings.cache,
        resume_hint=RESUME_HINT.replace("{nproc}", str(world.world_size)),
        world_size=world.world_size,
        standbys=standbys,
    )
    model = _model_of(run.record, run.data.shape, settings.device)
    if tensors is not None:
        model.load_state_dict(tensors)
    return run, model, step


def _settings(engine: Engine, run_id: int, spec: TrainSpec | None) -> TrainerSettings:
    if spec is not None:
        return spec.trainer
    with transaction(engine, f"reading run {run_id}") as session:
        return TrainerSettings.from_dict(run_store.get_run(session, run_id).trainer)
