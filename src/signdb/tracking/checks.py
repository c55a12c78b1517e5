"""The checks a run applies to what people's code hands it: steps, splits, tensors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from signdb.errors import InvalidArgument


def check_step(step: object) -> int:
    if type(step) is int and 0 <= step < 2**31:
        return step
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step < 2**31:
        raise InvalidArgument(f"step must be an integer from 0 to {2**31 - 1}, got {step!r}")
    return int(step)


def check_split(split: str) -> str:
    if split not in ("train", "val", "test"):
        raise InvalidArgument(f"split must be train, val or test, got {split!r}")
    return split


def check_tensors(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """numpy arrays (torch tensors are moved to the CPU) of a type stored exactly."""
    if not isinstance(tensors, Mapping) or not tensors:
        raise InvalidArgument("save_weights needs a non-empty mapping of name -> array")
    out = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or "\x00" in name:
            raise InvalidArgument(f"tensor names are non-empty text, got {name!r}")
        if hasattr(value, "detach"):  # a torch tensor
            if str(getattr(value, "dtype", "")) == "torch.bfloat16":
                raise InvalidArgument(
                    f"tensor {name!r} is bfloat16, which numpy cannot hold; store "
                    "tensor.float() (float32 holds every bfloat16 value exactly)"
                )
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise InvalidArgument(
                f"tensor {name!r} has dtype {arr.dtype}; store numeric or boolean arrays"
            )
        out[name] = arr
    return out
