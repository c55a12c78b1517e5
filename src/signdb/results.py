"""The base of every result object the Python API returns and the CLI prints as JSON.

A result is a plain dataclass; :meth:`Result.as_dict` is its JSON form, so no
result writes its own. A field marked ``field(metadata={"json": False})``
stays out of it (tables a human view prints, say).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_plain_dict(value)
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def as_plain_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of JSON-ready values, without fields marked ``json=False``."""
    return {
        f.name: _plain(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.metadata.get("json", True)
    }


class Result:
    """Mixin for result dataclasses: ``as_dict()`` is the CLI's ``--json`` object."""

    def as_dict(self) -> dict[str, Any]:
        return as_plain_dict(self)


def not_in_json(**kwargs: Any) -> Any:
    """A dataclass field left out of :meth:`Result.as_dict`."""
    return dataclasses.field(metadata={"json": False}, **kwargs)
