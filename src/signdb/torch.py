"""signdb for PyTorch: :class:`RunDataset`, and one run shared by the ranks of torch.distributed.

``RunDataset(run, split)`` is a ``torch.utils.data.IterableDataset`` of a
run's images, per image or (``batch_size=B``) per batch; see
:mod:`signdb.tracking.torchdata`.

Your own DistributedDataParallel loop logs one run: rank 0 starts it and
records it, the other ranks join it::

    signdb.torch.init_process_group("gloo")  # under torchrun (torch's own works too)
    with signdb.torch.distributed_run(db, "digits", "my-cnn", classes="all") as run:
        for epoch in range(epochs):
            for X, y in RunDataset(run, "train", batch_size=32, epoch=epoch):  # this rank's share
                loss = ...
                run.log(step, loss=reduced_loss)  # rank 0 writes; elsewhere a no-op

(``db.start_run(..., world_size=N)`` on rank 0 and ``db.join_run(run_id,
rank=r, world_size=N)`` on the others, with the id broadcast, is the same by
hand.) :func:`init_process_group` is ``torch.distributed.init_process_group``
for torchrun's ranks that also survives ``torchrun --max-restarts``
restarting them (see :func:`signdb.training.distributed.init_process_group`).
Without PyTorch, importing this module fails with what to install.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from signdb.errors import InvalidArgument
from signdb.tracking.torchdata import RunDataset, torch
from signdb.training.distributed import init_process_group

if TYPE_CHECKING:
    from signdb.api import Database
    from signdb.tracking import Run

__all__ = ["RunDataset", "distributed_run", "init_process_group"]


def distributed_run(db: Database, dataset: str, model: str, **start: Any) -> Run:
    """The same run on every rank of the initialized process group.

    Rank 0 calls ``db.start_run(dataset, model, world_size=..., **start)``
    and broadcasts the run's id (a validation error too, so every rank raises
    it); the other ranks ``db.join_run`` it. Call it on every rank at the same
    point, and use the result as a context manager.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise InvalidArgument(
            "distributed_run needs torch.distributed.init_process_group() first (torchrun "
            "sets the environment for it); for one process use db.start_run"
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    message: list[Any] = [None, None]
    run = None
    if rank == 0:
        try:
            run = db.start_run(dataset, model, world_size=world, **start)
            message = [run.id, None]
        except Exception as e:
            message = [None, f"{type(e).__name__}: {e}"]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise InvalidArgument(f"rank 0 could not start the run: {message[1]}")
    if rank != 0:
        run = db.join_run(message[0], rank=rank, world_size=world, cache=start.get("cache", "auto"))
    # Each rank's pid and host, so a failure can name the rank that died.
    names: list[Any] = [None] * world
    dist.all_gather_object(names, f"pid {os.getpid()} on {socket.gethostname()}")
    run.lease.set_peers(dict(enumerate(names)))
    return run
