"""Serving trained models: the Open Inference Protocol (``/v2``), MLflow's ``/invocations``,
image uploads, and the model aliases. Each route is one :mod:`signdb.serving` call.

Inference only reads, so it runs on the caller's engine like every other read
(a viewer's is read-only, as ``signdb_analyst``). Served predictions, when
``--log-predictions`` asks for them, are written by the server itself, as
``signdb_writer``, from a background thread: a request never waits for them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from signdb import serving
from signdb.db.engine import transaction
from signdb.server.auth import Caller, editor, state_of, viewer
from signdb.server.encoding import json_response

router = APIRouter(tags=["models"])
Viewer = Annotated[Caller, Depends(viewer)]
Editor = Annotated[Caller, Depends(editor)]
#: Protocol paths; their errors follow the protocol (400 for a bad request) and are
#: ``{"error": ...}`` as everywhere else.
PROTOCOL_PREFIXES = ("/v2", "/invocations")


@router.get("/v2/health/live", summary="The server process is up (no token needed)")
def live() -> Response:
    return json_response({"live": True})


@router.get("/v2/health/ready", summary="The server can reach its database (no token needed)")
def ready(request: Request) -> Response:
    with transaction(state_of(request).own_engine, "checking the database") as session:
        session.connection()  # a round trip: DatabaseUnavailable (503) when it is down
    return json_response({"ready": True})


@router.get("/v2", summary="The server's name, version and protocol extensions")
def server_metadata(caller: Viewer) -> Response:
    return json_response(serving.server_metadata())


@router.get("/v2/models/{name}", summary="A model's inputs, outputs and class names")
@router.get("/v2/models/{name}/versions/{version}", summary="The same, for one version (run id)")
def model_metadata(caller: Viewer, name: str, version: str | None = None) -> Response:
    return json_response(serving.model_metadata(caller.engine, name, version))


@router.get("/v2/models/{name}/ready", summary="The model can be served")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="The same, for one version")
def model_ready(caller: Viewer, name: str, version: str | None = None) -> Response:
    return json_response(serving.model_ready(caller.engine, name, version))


@router.post(
    "/v2/models/{name}/infer",
    summary="Inference: JSON tensors, or the binary tensor extension",
    openapi_extra={"requestBody": {"content": {"application/json": {}}}},
)
@router.post("/v2/models/{name}/versions/{version}/infer", summary="The same, for one version")
async def infer(
    request: Request, caller: Viewer, name: str, version: str | None = None
) -> Response:
    body = await request.body()
    answer = await run_in_threadpool(
        serving.infer,
        caller.engine,
        name,
        body,
        request.headers.get("inference-header-content-length"),
        version=version,
        log=state_of(request).prediction_log,
    )
    return Response(answer.body, media_type=answer.content_type, headers=answer.headers)


@router.post(
    "/invocations",
    summary="MLflow's scoring route, answered by the --invocations-model alias",
    openapi_extra={"requestBody": {"content": {"application/json": {}}}},
)
async def invocations(request: Request, caller: Viewer) -> Response:
    body = await request.body()
    state = state_of(request)
    answer = await run_in_threadpool(
        serving.invocations,
        caller.engine,
        state.settings.invocations_model,
        body,
        request.headers.get("content-type"),
        log=state.prediction_log,
    )
    return Response(answer, media_type="application/json")


@router.post("/api/v1/models/{name}/predict", summary="Classify image files (multipart 'files')")
async def predict(
    request: Request, caller: Viewer, name: str, files: Annotated[list[UploadFile], File()]
) -> Response:
    uploads = [(f.filename or f"file {i}", await f.read()) for i, f in enumerate(files)]
    result = await run_in_threadpool(
        serving.predict_uploads,
        caller.engine,
        name,
        uploads,
        log=state_of(request).prediction_log,
    )
    return json_response(result)


@router.get("/api/v1/models", summary="Model aliases and the runs they point at")
def models(caller: Viewer) -> Response:
    return json_response({"models": serving.list_models(caller.engine)})


@router.get("/api/v1/models/{name}", summary="One alias with its history, or run-<id>")
def model(caller: Viewer, name: str) -> Response:
    return json_response(serving.show_model(caller.engine, name))


@router.put("/api/v1/models/{name}", summary="Point an alias at a run (editors only)")
def point_alias(
    caller: Editor,
    name: str,
    run_id: Annotated[int, Body(embed=True, ge=1, description="The run to serve.")],
) -> Response:
    changed: dict[str, Any] = serving.set_alias(
        caller.engine, name, run_id, who=caller.identity.name or "editor"
    )
    return json_response(changed)
