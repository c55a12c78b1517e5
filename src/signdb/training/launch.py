"""``signdb train --nproc N``: torchrun's own launcher, started from signdb.

The same as ``torchrun --standalone --nproc-per-node N -m signdb train ...``:
PyTorch's elastic agent (:func:`torch.distributed.launcher.api.elastic_launch`)
runs in this process, starts ``N`` copies of ``signdb train`` with the same
flags and torchrun's environment (``RANK``, ``WORLD_SIZE``, ...), watches
them, and stops them all when one fails. Rank 0 prints the result.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Sequence

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, RankFailed, RunInterrupted, SignDBError
from signdb.store import runs as run_store

#: Seconds the agent gives the other ranks to record a failure before it kills them.
SHUTDOWN_SECONDS = 60


def threads_per_process(nproc: int, cpus: int | None = None) -> int:
    """``OMP_NUM_THREADS`` for ``nproc`` ranks on one machine: its cores shared out evenly.

    (torchrun sets 1 whatever the machine; a rank's intra-op threads then idle
    the other cores when there are fewer ranks than cores.)

    >>> threads_per_process(2, cpus=16), threads_per_process(4, cpus=2)
    (8, 1)
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // nproc)


def launch(
    nproc: int, args: Sequence[str], *, engine: Engine | None = None, quiet: bool = False
) -> None:
    """Run ``python -m signdb <args>`` as ``nproc`` ranks on this machine; raise when one fails.

    ``quiet`` keeps the agent's own log lines (which go to stderr) to errors only.
    When a rank fails, the agent knows which: with ``engine``, it also marks the
    launch's run failed naming it, unless a rank recorded the failure first (a
    rank 0 too slow to do so before the agent stopped it, on a loaded machine).
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise InvalidArgument(f"--nproc must be a number of processes >= 1, got {nproc!r}")
    from signdb.ml.torchbase import require_torch

    require_torch()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process(nproc)))
    if quiet:
        logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone picks
        max_restarts=0,
        monitor_interval=0.1,
        shutdown_timeout=SHUTDOWN_SECONDS,
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "signdb", *args)
    except SignalException as e:  # SIGINT/SIGTERM here: the agent stopped every rank with it
        raise RunInterrupted(
            f"{e.sigval.name} stopped the launch's {nproc} processes; rank 0 checkpointed the "
            "run and recorded it interrupted (`signdb runs list` shows it; --resume goes on)"
        ) from None
    except ChildFailedError as e:
        failures = sorted(e.failures.items(), key=lambda item: item[1].timestamp)
        rank, first = failures[0]
        how = (
            f"was killed by signal {-first.exitcode}"
            if first.exitcode < 0
            else f"exited with status {first.exitcode}"
        )
        if engine is not None:
            _record_failure(
                engine, config.run_id, f"rank {rank} of {nproc} (pid {first.pid}) {how}"
            )
        raise RankFailed(
            f"rank {rank} of {nproc} (pid {first.pid}) {how}, and the launch stopped; "
            "its run's error (signdb runs show RUN_ID) says why"
        ) from None


def _record_failure(engine: Engine, launch_id: str, what: str) -> None:
    """The launch's run, if rank 0 made one and it is still running: failed, naming the rank."""
    try:
        with transaction(engine, "recording the failed launch") as session:
            run_id = run_store.run_of_launch(session, f"torchrun:{launch_id}")
            if run_id is not None:
                run_store.fail_if_running(
                    session,
                    run_id,
                    f"{what}; the launcher stopped the other processes; resume with "
                    f"`signdb train --resume {run_id} --nproc N` (any number of processes)",
                )
    except SignDBError:
        pass  # the error raised below says what happened; the heartbeat ends the run
