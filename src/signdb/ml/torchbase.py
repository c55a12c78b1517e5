"""PyTorch, optional: the import, the device, and what every torch model and feed needs from it.

``torch`` (and ``nn``, ``F``) are None without the ``torch`` extra, so modules that
import from here still import; :func:`require_torch` then says how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.base import step_rng

try:  # The optional extra: without it the module imports and require_torch() explains.
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # pragma: no cover - the test install has torch
    torch = nn = F = None  # type: ignore[assignment]

DEVICES = ("auto", "cpu", "cuda")


def require_torch() -> Any:
    """The ``torch`` module, or the error callers report when the extra is missing."""
    if torch is None:
        raise InvalidArgument("the torch engine needs PyTorch: pip install 'signdb[torch]'")
    return torch


def resolve_device(device: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``."""
    require_torch()
    if device not in DEVICES:
        raise InvalidArgument(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(
            f"--device cuda needs a CUDA GPU, but torch {torch.__version__} sees none; "
            "use --device auto (CUDA when there is one, else the CPU) or --device cpu"
        )
    if device == "cuda":
        # cuBLAS refuses deterministic mode without a fixed workspace; read at first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(device)


def generator(seed: int, step: int, stream: int, device: torch.device) -> torch.Generator:
    """A torch generator that depends only on (seed, step, stream), like ``step_rng``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(step_rng(seed, step, stream).integers(0, 2**63 - 1)))
    return gen


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the duration, then the caller's settings back.

    Without NaN-filling every ``torch.empty``: that is a check for kernels that
    read memory they never wrote, not part of determinism, and it took a fifth
    of a CNN step.
    """
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def from_stored(key: str, value: Any, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A stored array as a tensor of the live one's shape and dtype (flat real[] is fine)."""
    arr = np.asarray(value)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise InvalidArgument(
            f"stored tensor {key!r} has {arr.size} values, expected shape {tuple(shape)}; "
            "the checkpoint belongs to a different model"
        )
    return torch.from_numpy(np.array(arr.reshape(shape))).to(dtype)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A C-ordered CPU copy that keeps the tensor's dtype (int64 stays int64)."""
    return np.array(t.detach().cpu().numpy(), order="C", copy=True)
