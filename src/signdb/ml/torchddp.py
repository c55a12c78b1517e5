"""The torch engine's steps on tensor batches, alone or as one rank of DistributedDataParallel.

:func:`train_batch` is :meth:`~signdb.ml.base.Classifier.train_step` for a
batch that is already a tensor (what :class:`signdb.torch.RunDataset` yields):
the same update, bit for bit, without a trip through numpy.

:func:`distribute` wraps the model's layers in ``DistributedDataParallel``
(gloo on the CPU, NCCL on CUDA: whatever process group is initialized), and
:func:`train_share` trains one rank's share of a global batch so that the
update equals the one a single process makes on the whole batch:

* each rank sums its images' losses and scales the sum by
  ``world_size / batch_total``; DDP averages the gradients over the ranks, so
  the result is the gradient of the mean over the global batch, even when the
  last batch splits unevenly;
* dropout masks and augmentation draws are made for the whole global batch
  and each rank keeps the rows of its images (positions ``rank, rank +
  world_size, ...``), so they match the single process's draws;
* batch norm normalises each rank's share with its own statistics, as DDP
  does without ``SyncBatchNorm``: the one difference from one process, and
  why a model with batch norm is not equal to its single-process twin.

Every rank holds the same weights and optimizer state throughout; DDP also
broadcasts rank 0's buffers (batch norm's running statistics) before each
forward, and :func:`sync_buffers` does so before an evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.augment import random_affine
from signdb.ml.base import StepResult
from signdb.ml.torchbase import require_torch
from signdb.ml.torchnet import _TorchEngine

torch = require_torch()
nn = torch.nn


class _Logits(nn.Module):
    """The model's forward pass as a module, for DistributedDataParallel to wrap."""

    def __init__(self, model: _TorchEngine) -> None:
        super().__init__()
        self.layers = model.module_  # registers the parameters DDP reduces
        object.__setattr__(self, "_model", model)  # a plain reference, not a submodule

    def forward(self, x: Any, gen: Any, rate: float) -> Any:
        return self._model._logits(x, gen, rate)


def distribute(model: _TorchEngine) -> _TorchEngine:
    """Train ``model`` as this process's rank of the initialized process group.

    Call it on every rank at the same point, after the model is initialized
    (and restored from a checkpoint): DDP's constructor broadcasts rank 0's
    parameters and buffers, a collective operation.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise InvalidArgument("distribute() needs torch.distributed.init_process_group first")
    device = torch.device(model.device)
    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    model._net = nn.parallel.DistributedDataParallel(_Logits(model), device_ids=ids)
    return model


def train_batch(model: _TorchEngine, X: Any, y: Any, step: int) -> StepResult:
    """One update of ``model`` on the NCHW float tensor ``X`` (CPU, pinned or not)."""
    return model._step_tensor(_input(model, X, step, None), y, step)


def train_share(
    model: _TorchEngine, X: Any, y: Any, step: int, *, rank: int, world_size: int, batch_total: int
) -> StepResult:
    """This rank's share ``X`` of a global batch of ``batch_total`` images (see the module
    docstring). The returned cost is this rank's part: the global batch's cost is the
    mean of the ranks' costs; ``correct`` counts this rank's images."""
    if model._net is None:
        raise InvalidArgument("train_share() needs distribute(model) first")
    draw = (rank, batch_total, world_size)
    x = _input(model, X, step, draw)
    model._draw = draw
    try:
        return model._step_tensor(x, y, step, scale=world_size / batch_total)
    finally:
        model._draw = None


def sync_buffers(model: _TorchEngine) -> None:
    """Give every rank rank 0's buffers (batch norm's running statistics): each rank's
    last forward updated its own from its own share."""
    with torch.no_grad():
        for buffer in model.module_.buffers():
            torch.distributed.broadcast(buffer, src=0)


def _input(model: _TorchEngine, X: Any, step: int, rows: tuple[int, int, int] | None) -> Any:
    """NCHW batch -> NHWC (a view of channels_last memory), augmented, on the model's device."""
    if tuple(X.shape[1:]) != (model.input_shape_[2], *model.input_shape_[:2]):
        raise InvalidArgument(
            f"input shape {tuple(X.shape[1:])} does not match the model's (C, H, W) "
            f"{(model.input_shape_[2], *model.input_shape_[:2])}; preprocess images to the "
            "training size"
        )
    x = X.permute(0, 2, 3, 1)
    if getattr(model, "augment", False):
        pixels = np.ascontiguousarray(x.cpu().numpy())
        x = torch.from_numpy(random_affine(pixels, model.seed, step, rows=rows))
    x = x.contiguous()  # NHWC memory: a view already, for channels_last batches
    device = torch.device(model.device)
    return x.to(device, non_blocking=x.is_pinned()) if x.device != device else x
