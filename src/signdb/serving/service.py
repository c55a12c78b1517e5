"""One function per serving route: what ``signdb serve``'s handlers call, bytes in and out.

Each takes the request's :class:`~sqlalchemy.Engine` (a viewer's read-only one
is enough: serving only reads) and raises an :class:`~signdb.errors.InputError`
for anything wrong with the request, naming what was expected, before it logs
anything. Answers go to the ``log`` (a :class:`PredictionLog`, or None when
``--log-predictions`` is off) after they are computed, off the request path.

* ``GET /v2``: :func:`server_metadata`
* ``GET /v2/models/{name}[/versions/{v}]``: :func:`model_metadata`
* ``GET /v2/models/{name}[/versions/{v}]/ready``: :func:`model_ready`
* ``POST /v2/models/{name}[/versions/{v}]/infer``: :func:`infer`
* ``POST /invocations``: :func:`invocations`
* ``POST /api/v1/models/{name}/predict``: :func:`predict_uploads`

:func:`http_status` maps the errors to statuses, and
:func:`~signdb.serving.protocol.error_body` makes the protocol's ``{"error": ...}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Engine

from signdb._version import __version__
from signdb.data.preprocess import decode_image
from signdb.errors import (
    DatabaseUnavailable,
    InputError,
    InvalidArgument,
    NotFound,
    SignDBError,
    TensorError,
)
from signdb.ml.metrics import decide
from signdb.ml.onnx_export import LABEL, PROBABILITIES
from signdb.serving.invocations import encode_invocations, parse_invocations
from signdb.serving.models import MAX_BATCH, ServedModel, resolve_model
from signdb.serving.prediction_log import PredictionLog
from signdb.serving.protocol import (
    EXTENSIONS,
    EncodedResponse,
    InferRequest,
    encode_infer_response,
    parse_infer_request,
)


def http_status(error: SignDBError) -> int:
    """The status a protocol route answers ``error`` with; the body is
    :func:`~signdb.serving.protocol.error_body` of its message.

    404 for an unknown model or run, 400 for everything else wrong with the
    request (the protocol's "typically 400"), 503 while the database is away.

    >>> from signdb.errors import ModelNotFound, TensorError
    >>> http_status(ModelNotFound("no model 'x'")), http_status(TensorError("bad shape"))
    (404, 400)
    """
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InputError):
        return 400
    if isinstance(error, DatabaseUnavailable):
        return 503
    return 500


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: the server's name, version and protocol extensions."""
    return {"name": "signdb", "version": __version__, "extensions": list(EXTENSIONS)}


def model_metadata(engine: Engine, name: str, version: str | None = None) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs, outputs, and the class names in ``parameters``."""
    return resolve_model(engine, name, version).metadata()


def model_ready(engine: Engine, name: str, version: str | None = None) -> dict[str, Any]:
    """``GET /v2/models/{name}/ready``: loads the model; an unknown or unservable one raises."""
    resolve_model(engine, name, version)
    return {"name": name, "ready": True}


def infer(
    engine: Engine,
    name: str,
    body: bytes,
    header_length: int | str | None = None,
    *,
    version: str | None = None,
    log: PredictionLog | None = None,
) -> EncodedResponse:
    """``POST /v2/models/{name}/infer``: the protocol's request (JSON, or JSON and binary
    tensors with ``Inference-Header-Content-Length``) to its response, JSON or binary as asked."""
    started = time.perf_counter()
    model = resolve_model(engine, name, version)
    request = parse_infer_request(body, header_length)
    images = _one_input(request, model)
    _check_outputs(request, name)
    proba, labels = model.infer(images)
    response = encode_infer_response(
        request, name, model.version, {PROBABILITIES: proba, LABEL: labels}
    )
    _log(log, model, proba, labels, started)
    return response


def invocations(
    engine: Engine,
    name: str,
    body: bytes,
    content_type: str | None,
    *,
    log: PredictionLog | None = None,
) -> bytes:
    """``POST /invocations`` (MLflow's scoring route) answered by model ``name``: JSON in and out."""
    started = time.perf_counter()
    model = resolve_model(engine, name)
    images = parse_invocations(body, content_type, model.loaded.shape)
    proba, labels = model.infer(images)
    names = dict(zip(model.loaded.labels.tolist(), model.loaded.names, strict=True))
    out = encode_invocations(proba, labels, model.loaded.names, names)
    _log(log, model, proba, labels, started)
    return out


def predict_uploads(
    engine: Engine,
    name: str,
    files: Sequence[tuple[str, bytes]],
    *,
    log: PredictionLog | None = None,
) -> dict[str, Any]:
    """``POST /api/v1/models/{name}/predict``: image files (``(filename, bytes)``), each
    decoded and resized exactly as ``signdb load`` stores it, to their classes.

    Every file is decoded before any is scored: an undecodable one fails the
    request with an :class:`~signdb.errors.ImageError` naming it.
    """
    started = time.perf_counter()
    model = resolve_model(engine, name)
    if not files:
        raise InvalidArgument("send at least one image file (multipart field 'files')")
    if len(files) > MAX_BATCH:
        raise TensorError(f"send at most {MAX_BATCH} image files a request, got {len(files)}")
    prep = model.loaded.preprocessing
    pixels = np.stack([decode_image(data, filename, prep) for filename, data in files])
    proba, labels = model.infer(pixels)
    _, probability = decide(proba.astype(np.float64), model.loaded.labels)
    names = dict(zip(model.loaded.labels.tolist(), model.loaded.names, strict=True))
    predictions = [
        {
            "file": filename,
            "label": int(label),
            "class": names[int(label)],
            "probability": float(p),
            "probabilities": dict(zip(model.loaded.names, (float(v) for v in row), strict=True)),
        }
        for (filename, _), label, p, row in zip(files, labels, probability, proba, strict=True)
    ]
    _log(log, model, proba, labels, started)
    return {"model": name, "run_id": model.run_id, "predictions": predictions}


def _one_input(request: InferRequest, model: ServedModel) -> np.ndarray:
    if len(request.inputs) != 1:
        got = json.dumps([t.name for t in request.inputs])
        raise TensorError(
            f"model {model.name!r} takes one input, images [N, H, W, C]; the request has "
            f"{len(request.inputs)}: {got}"
        )
    return request.inputs[0].array


def _check_outputs(request: InferRequest, name: str) -> None:
    unknown = [o.name for o in request.outputs or () if o.name not in (PROBABILITIES, LABEL)]
    if unknown:
        raise TensorError(
            f"model {name!r} has no output {unknown[0]!r}; its outputs are {PROBABILITIES} "
            f"and {LABEL}"
        )


def _log(
    log: PredictionLog | None,
    model: ServedModel,
    proba: np.ndarray,
    labels: np.ndarray,
    started: float,
) -> None:
    if log is not None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        log.record(model.name, model.run_id, proba, labels, latency_ms, classes=model.loaded.labels)
