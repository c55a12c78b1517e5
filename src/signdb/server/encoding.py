"""JSON as the API writes it: ``json.dumps`` with dates, decimals and numpy values handled.

FastAPI's own encoder walks every value in Python first; for a chart's
thousands of points that costs more than the database read, so responses are
serialised here in one pass.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.responses import Response


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data: Any) -> str:
    try:
        return json.dumps(data, default=_default, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN or an infinity somewhere: JSON has neither, so they become null
        return json.dumps(_finite(data), default=_default, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def json_response(data: Any, status: int = 200) -> Response:
    return Response(to_json(data), status_code=status, media_type="application/json")
