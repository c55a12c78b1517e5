"""What the training loop does across ranks: nothing for one process, torch.distributed otherwise.

The loop is the same code on every rank. :class:`Solo` is one process;
:class:`Ranks` is this process's rank of an initialized ``torch.distributed``
process group: it sums each step's cost, correct count and stop request
over the ranks (one small all-reduce), and the held-out counts of a sharded
evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Solo:
    """One process: rank 0 of 1, every reduction the identity."""

    rank = 0
    world_size = 1

    def sum(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]

    def shard(self) -> tuple[int, int] | None:
        return None

    def sync_model(self, model: Any) -> None:
        pass

    def settle(self, run: Any) -> None:
        """Past the last collective operation: other ranks may now leave, and a later
        failure here is this rank's own (not a peer's death)."""


class Ranks(Solo):
    """This process's rank of the initialized process group."""

    def __init__(self, rank: int, world_size: int, device: str = "cpu") -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed elementwise over every rank (float64: counts stay exact)."""
        from signdb.ml.torchbase import require_torch

        torch = require_torch()
        # NCCL reduces CUDA tensors only; gloo takes CPU ones.
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.cpu().tolist()

    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def sync_model(self, model: Any) -> None:
        from signdb.ml.torchddp import sync_buffers

        sync_buffers(model)

    def settle(self, run: Any) -> None:
        if run.lease is not None:
            run.lease.set_peers({})
