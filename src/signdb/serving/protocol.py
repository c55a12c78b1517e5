"""The Open Inference Protocol's HTTP bodies (KServe V2), with Triton's binary tensor extension.

Pure functions from bytes to arrays and back; the server's routes only move
them over HTTP. The names are the protocol's own, so KServe's and Triton's
clients work unchanged:

* a request is ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype",
  "parameters"?, "data"}], "outputs"?: [{"name", "parameters"?}]}``; ``data`` is
  row-major, flat or nested;
* with the binary extension the JSON is followed by raw tensor bytes, its
  length in the ``Inference-Header-Content-Length`` header; an input carrying
  ``"binary_data_size"`` takes its bytes (little-endian, row-major) from there,
  in input order;
* an output comes back as binary when its request names ``"binary_data": true``,
  or when the request's ``"binary_data_output"`` is true and the output does not
  say otherwise; Triton's Python client asks for that by default.

Examples
--------
>>> import numpy as np
>>> body = b'{"id": "7", "inputs": [{"name": "images", "shape": [1, 2, 2, 1], "datatype": "UINT8", "data": [0, 1, 2, 255]}]}'
>>> request = parse_infer_request(body)
>>> request.id, request.inputs[0].array.dtype, request.inputs[0].array.shape
('7', dtype('uint8'), (1, 2, 2, 1))
>>> outputs = {"probabilities": np.array([[0.25, 0.75]], np.float32), "label": np.array([1])}
>>> response = encode_infer_response(request, "champion", "12", outputs)
>>> response.content_type, response.body[:59]
('application/json', b'{"model_name":"champion","model_version":"12","id":"7","out')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from signdb.errors import TensorError

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON = "application/json"
BINARY = "application/octet-stream"
EXTENSIONS = ("binary_tensor_data",)
#: The protocol's datatypes this server reads (BYTES is not an image datatype).
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(kind).newbyteorder("<")
    for name, kind in {
        "BOOL": "bool",
        "UINT8": "uint8",
        "UINT16": "uint16",
        "UINT32": "uint32",
        "UINT64": "uint64",
        "INT8": "int8",
        "INT16": "int16",
        "INT32": "int32",
        "INT64": "int64",
        "FP16": "float16",
        "FP32": "float32",
        "FP64": "float64",
    }.items()
}
_OIP_NAMES = {dtype.name: name for name, dtype in DTYPES.items()}


def datatype_name(dtype: np.dtype) -> str:
    """The protocol's name for a numpy dtype (``FP32`` for float32); numpy's own if none."""
    return _OIP_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: the request's default


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None  # None: every output, in the model's order
    binary_output: bool  # the request's "binary_data_output"
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EncodedResponse:
    """An HTTP response body and the headers that must go with it."""

    body: bytes
    content_type: str
    headers: dict[str, str]


def parse_infer_request(body: bytes, header_length: int | str | None = None) -> InferRequest:
    """An inference request from its HTTP body (``header_length``: the binary extension's header).

    Every malformed part is a :class:`TensorError` naming it and what was expected.
    """
    header, binary = _split_body(body, header_length)
    try:
        obj = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        hint = (
            "" if header_length is not None else f" (binary data needs the {HEADER_LENGTH} header)"
        )
        raise TensorError(f"the inference request is not valid JSON: {e}{hint}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("inputs"), list) or not obj["inputs"]:
        raise TensorError(
            'an inference request is a JSON object with "inputs": '
            '[{"name", "shape", "datatype", "data"}, ...]'
        )
    parameters = _parameters(obj, "the request")
    offset = 0
    inputs = []
    for i, raw in enumerate(obj["inputs"]):
        tensor, used = _parse_input(raw, i, binary, offset)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise TensorError(
            f"the request carries {len(binary)} bytes of binary tensor data after its JSON, but "
            f"its inputs' binary_data_size add up to {offset}"
        )
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError(f'the request "id" must be a string, got {request_id!r}')
    return InferRequest(
        id=request_id,
        inputs=inputs,
        outputs=_requested_outputs(obj.get("outputs")),
        binary_output=_flag(parameters, "binary_data_output", "the request"),
        parameters=parameters,
    )


def encode_infer_response(
    request: InferRequest,
    model_name: str,
    model_version: str | None,
    outputs: Mapping[str, np.ndarray],
) -> EncodedResponse:
    """The response to ``request``: the outputs it asked for (default: all, in ``outputs``'
    order), each as JSON or binary as it asked."""
    if request.outputs is None:
        chosen = [(name, request.binary_output) for name in outputs]
    else:
        unknown = [o.name for o in request.outputs if o.name not in outputs]
        if unknown:
            raise TensorError(
                f"model {model_name!r} has no output {unknown[0]!r}; its outputs are "
                f"{', '.join(outputs)}"
            )
        chosen = [
            (o.name, request.binary_output if o.binary is None else o.binary)
            for o in request.outputs
        ]
    items, blobs = [], []
    for name, binary in chosen:
        array = np.ascontiguousarray(outputs[name])
        item: dict[str, Any] = {
            "name": name,
            "datatype": datatype_name(array.dtype),
            "shape": list(array.shape),
        }
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = array.ravel().tolist()
        items.append(item)
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = items
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return EncodedResponse(header, JSON, {})
    return EncodedResponse(header + b"".join(blobs), BINARY, {HEADER_LENGTH: str(len(header))})


def error_body(message: str) -> bytes:
    """The protocol's error object: ``{"error": message}``."""
    return json.dumps({"error": message}).encode()


# -- parsing ---------------------------------------------------------------------
def _split_body(body: bytes, header_length: int | str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except (TypeError, ValueError):
        n = -1
    if not 0 < n <= len(body):
        raise TensorError(
            f"{HEADER_LENGTH} is {header_length!r}, but the body holds {len(body)} bytes; it must "
            "be the length of the JSON part that starts the body"
        )
    return body[:n], memoryview(body)[n:]


def _parse_input(raw: Any, i: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise TensorError(f'input {i} must be an object {{"name", "shape", "datatype", "data"}}')
    name = raw.get("name")
    what = f"input {name!r}" if isinstance(name, str) else f"input {i}"
    if not isinstance(name, str) or not name:
        raise TensorError(f'{what} needs a "name"')
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise TensorError(f'{what} needs a "shape": a list of non-negative integers, got {shape!r}')
    datatype = raw.get("datatype")
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise TensorError(
            f'{what} has datatype {datatype!r}; image inputs are "UINT8" (pixels 0..255) or '
            '"FP32" (pixel / 255 in [0, 1])'
        )
    count = int(np.prod(shape, dtype=np.int64))
    size = _parameters(raw, what).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TensorError(f"{what}: binary_data_size must be a byte count, got {size!r}")
        if size != count * dtype.itemsize:
            raise TensorError(
                f"{what} has shape {shape} of {datatype} ({count * dtype.itemsize} bytes), but "
                f"binary_data_size is {size}"
            )
        if offset + size > len(binary):
            raise TensorError(
                f"{what} needs {size} bytes of binary data, but only {len(binary) - offset} follow "
                "the JSON"
            )
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).astype(
            dtype.newbyteorder("="), copy=False
        )
        return Tensor(name, datatype, array.reshape(shape)), size
    if "data" not in raw:
        raise TensorError(f'{what} has no "data" and no binary_data_size parameter')
    return Tensor(name, datatype, _json_data(raw["data"], shape, datatype, dtype, what)), 0


def _json_data(
    data: Any, shape: list[int], datatype: str, dtype: np.dtype, what: str
) -> np.ndarray:
    """JSON ``data`` (flat or nested, row-major) as an array of ``shape``, values checked."""
    try:
        array = np.asarray(data)
    except ValueError:  # numpy's "inhomogeneous shape": a ragged nested list
        raise TensorError(
            f"{what}: data is a ragged nested list; give it flat or as {shape}"
        ) from None
    if array.dtype.kind not in "biuf":
        raise TensorError(f"{what}: data must hold numbers for datatype {datatype}")
    count = int(np.prod(shape, dtype=np.int64))
    if array.size != count:
        raise TensorError(
            f"{what} has shape {shape} ({count} values) but its data holds {array.size}"
        )
    kind = dtype.kind
    if kind in "iu":
        if array.size and array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise TensorError(f"{what}: {datatype} data must be whole numbers")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            bad = array.min() if array.min() < info.min else array.max()
            raise TensorError(
                f"{what}: {datatype} holds {info.min}..{info.max}, but the data has {bad.item()!r}"
            )
    elif kind == "b" and array.dtype.kind != "b":
        raise TensorError(f"{what}: BOOL data must be true or false")
    return array.astype(dtype.newbyteorder("=")).reshape(shape)


def _parameters(obj: dict, what: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TensorError(f'{what}: "parameters" must be an object, got {params!r}')
    return params


def _flag(params: dict, key: str, what: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise TensorError(f"{what}: parameter {key} must be true or false, got {value!r}")
    return value


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw
    ):
        raise TensorError('"outputs" must be a list of {"name": ..., "parameters"?: {...}}')
    out = []
    for o in raw:
        what = f"requested output {o['name']!r}"
        params = _parameters(o, what)
        if params.get("classification"):
            raise TensorError(
                f"{what}: the classification extension is not supported; request the "
                '"label" output and read the class names from the model metadata\'s parameters'
            )
        binary = _flag(params, "binary_data", what) if "binary_data" in params else None
        out.append(RequestedOutput(o["name"], binary))
    return out
