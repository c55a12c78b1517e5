"""MLflow's scoring route, ``POST /invocations``: its request formats over the same inference.

MLflow's scoring server takes a JSON object with exactly one of
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` (its
``SUPPORTED_FORMATS``) and answers ``{"predictions": ...}``. Here each holds
images:

* ``instances``: a list of images, or of one-field objects ``{"images": image}``;
* ``inputs``: a list of images, or an object ``{"images": [image, ...]}``;
* ``dataframe_split``: ``{"columns": [...], "data": [row, ...]}``, a row being
  one image's H*W*C pixel values (one column each, row-major) or a single cell
  holding the image;
* ``dataframe_records``: ``[{column: image}, ...]`` with a single column.

An image is nested ``[H][W][C]`` (``[H][W]`` for gray) or flat ``H*W*C``
values; integers are UINT8 pixels 0..255, numbers with a fraction FP32 pixels
in [0, 1], as MLflow's own ``np.array`` parsing types them. The answer is one
record per image: ``{"label", "class", "probabilities": {class name: p}}``.

Examples
--------
>>> request = b'{"instances": [[[0, 255], [255, 0]]]}'
>>> parse_invocations(request, "application/json", (2, 2, 1)).shape
(1, 2, 2, 1)
>>> parse_invocations(b'{"instances": [], "inputs": []}', "application/json", (2, 2, 1))
Traceback (most recent call last):
...
signdb.errors.TensorError: the request must be a JSON object with exactly one of dataframe_split, dataframe_records, instances, inputs; got keys inputs, instances
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from signdb.errors import TensorError

#: MLflow's scoring server's SUPPORTED_FORMATS, in the order its documentation lists them.
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON = "application/json"


def parse_invocations(body: bytes, content_type: str | None, shape: Sequence[int]) -> np.ndarray:
    """The images of a ``/invocations`` request, ``[N, H, W, C]`` uint8 or float32."""
    _check_content_type(content_type)
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TensorError(f"the request is not valid JSON: {e}") from None
    keys = sorted(set(obj) & set(FORMATS)) if isinstance(obj, dict) else []
    if len(keys) != 1:
        got = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
        raise TensorError(
            f"the request must be a JSON object with exactly one of {', '.join(FORMATS)}; "
            f"got {'keys ' if isinstance(obj, dict) else 'a '}{got}"
        )
    fmt = keys[0]
    value = obj[fmt]
    if fmt == "dataframe_split":
        items = _split_rows(value, shape)
    elif fmt == "dataframe_records":
        items = _single_field(value, fmt)
    elif fmt == "inputs" and isinstance(value, dict):
        items = _only_value(value, fmt)
    elif fmt == "instances" and isinstance(value, list) and value and isinstance(value[0], dict):
        items = _single_field(value, fmt)
    else:
        items = value
    if not isinstance(items, list) or not items:
        raise TensorError(f"{fmt} must hold a non-empty list of images")
    return _images(items, shape, fmt)


def encode_invocations(
    probabilities: np.ndarray, labels: np.ndarray, names: Sequence[str], label_names: dict[int, str]
) -> bytes:
    """``{"predictions": [{"label", "class", "probabilities": {name: p}}, ...]}``."""
    predictions = [
        {
            "label": int(label),
            "class": label_names.get(int(label), str(label)),
            "probabilities": dict(zip(names, (float(p) for p in row), strict=True)),
        }
        for label, row in zip(labels, probabilities, strict=True)
    ]
    return json.dumps({"predictions": predictions}).encode()


def _check_content_type(content_type: str | None) -> None:
    parts = [p.strip() for p in (content_type or "").split(";")]
    params = dict(p.partition("=")[::2] for p in parts[1:] if p)
    if parts[0] != JSON:
        raise TensorError(
            f"/invocations takes Content-Type {JSON}, got {content_type or 'none'!r}; CSV is not "
            "an image format"
        )
    if params.get("charset", "utf-8").lower() != "utf-8":
        raise TensorError(f"/invocations reads UTF-8 JSON only, got charset {params['charset']!r}")


def _split_rows(value: Any, shape: Sequence[int]) -> list[Any]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise TensorError('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
    columns = value.get("columns")
    rows = value["data"]
    pixels = int(np.prod(shape))
    if isinstance(columns, list) and len(columns) not in (1, pixels):
        raise TensorError(
            f"dataframe_split has {len(columns)} columns; an image is one column holding the "
            f"image, or {pixels} pixel columns (row-major {list(shape)})"
        )
    if isinstance(columns, list) and len(columns) == 1:
        return [row[0] if isinstance(row, list) and len(row) == 1 else row for row in rows]
    return rows


def _single_field(records: Any, fmt: str) -> list[Any]:
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and len(r) == 1 for r in records
    ):
        raise TensorError(f'{fmt} must be a list of one-field objects such as {{"images": image}}')
    return [next(iter(r.values())) for r in records]


def _only_value(value: dict, fmt: str) -> Any:
    if len(value) != 1:
        raise TensorError(
            f'{fmt} as an object must name one input, e.g. {{"images": [...]}}, got '
            f"{', '.join(sorted(value))}"
        )
    return next(iter(value.values()))


def _images(items: list[Any], shape: Sequence[int], fmt: str) -> np.ndarray:
    h, w, c = shape
    try:
        array = np.asarray(items)
    except ValueError:
        raise TensorError(
            f"{fmt}: the images are ragged nested lists; give each as [{h}][{w}][{c}]"
        ) from None
    if array.dtype.kind not in "iuf":
        raise TensorError(f"{fmt}: pixel values must be numbers")
    n = len(array)
    per_image = array.shape[1:]
    if per_image not in ((h, w, c), (h * w * c,)) and not (c == 1 and per_image == (h, w)):
        raise TensorError(
            f"{fmt}: each image must be [{h}][{w}][{c}]"
            + (f" or [{h}][{w}]" if c == 1 else "")
            + f" or {h * w * c} values, got shape {list(per_image)}"
        )
    array = array.reshape(n, h, w, c)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.size and (array.min() < 0 or array.max() > 255):
        bad = array.min() if array.min() < 0 else array.max()
        raise TensorError(f"{fmt}: integer pixels are 0..255, got {bad.item()!r}")
    return array.astype(np.uint8)
