"""``/api/v1``: JSON for everything the pages show. Each route is one capability call.

Errors come back as ``{"error": "..."}`` naming the bad value (404, 422, 401,
403, 503; see :mod:`signdb.server.errors`). The OpenAPI document is at
``/api/v1/openapi.json``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from signdb import explore
from signdb.server.auth import Caller, viewer
from signdb.server.encoding import json_response, to_json

router = APIRouter(prefix="/api/v1", tags=["api"])

Viewer = Annotated[Caller, Depends(viewer)]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A run's id.")]
Split = Annotated[
    Literal["test", "val", "train", "all"], Query(description="Which evaluated split.")
]
#: Seconds between two looks at a live run (the page is at most this far behind, plus
#: the logger's one-second flush).
POLL_SECONDS = 0.5
ENDED = ("succeeded", "failed", "interrupted", "cancelled")


def run_query(
    dataset: str | None = None,
    model: str | None = None,
    status: str | None = None,
    sweep: str | None = None,
    param: Annotated[
        list[str], Query(description="Hyperparameter filter NAME=VALUE; repeat for several.")
    ] = [],  # noqa: B006 - FastAPI's way to declare a repeated query parameter
    sort: Annotated[
        str, Query(description="A column, prefixed with - for descending.")
    ] = "-run_id",
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=explore.runs.MAX_PER_PAGE)] = 50,
) -> explore.RunQuery:
    return explore.RunQuery(
        dataset=dataset or None,
        model=model or None,
        status=status or None,
        sweep=sweep or None,
        params=dict(explore.parse_param_filter(p) for p in param if p),
        sort=sort,
        page=page,
        per_page=per_page,
    )


@router.get("/runs", summary="Runs, filtered, sorted and paged")
def list_runs(
    caller: Viewer,
    query: Annotated[explore.RunQuery, Depends(run_query)],
    choices: Annotated[
        bool, Query(description="Also list the values each filter can take.")
    ] = False,
) -> Response:
    return json_response(explore.list_runs(caller.engine, query, with_choices=choices))


@router.get("/runs/{run_id}", summary="One run: facts, lifecycle, metrics, evaluations")
def run(caller: Viewer, run_id: RunId) -> Response:
    return json_response(explore.run_detail(caller.engine, run_id))


@router.get("/runs/{run_id}/scores", summary="run_scores of one split, with intervals")
def run_scores(caller: Viewer, run_id: RunId, split: Split = "test") -> Response:
    return json_response(explore.run_scores(caller.engine, run_id, split))


@router.get("/runs/{run_id}/confusion", summary="The confusion matrix of one split")
def run_confusion(caller: Viewer, run_id: RunId, split: Split = "test") -> Response:
    return json_response(explore.run_confusion(caller.engine, run_id, split))


@router.get(
    "/runs/{run_id}/metrics/{name:path}",
    summary="One metric's history: downsampled for charts, or whole as CSV",
)
def metric(
    caller: Viewer,
    run_id: RunId,
    name: str,
    points: Annotated[int, Query(ge=2, le=explore.metrics.MAX_POINTS)] = 2000,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the query parameter's name
) -> Response:
    if format == "csv":
        lines = explore.metric_csv(caller.engine, run_id, name)
        filename = f"run-{run_id}-{name.replace('/', '_')}.csv"
        return StreamingResponse(
            lines,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return json_response(explore.metric_history(caller.engine, run_id, name, points=points))


@router.get("/compare", summary="2 to 10 runs side by side, with paired tests")
def compare(
    caller: Viewer,
    runs: Annotated[str, Query(description="Comma-separated run ids, e.g. 3,7")],
) -> Response:
    return json_response(explore.compare_runs(caller.engine, explore.parse_run_ids(runs)))


@router.get("/sweeps", summary="Sweep names")
def sweeps(caller: Viewer) -> Response:
    return json_response({"sweeps": explore.list_sweeps(caller.engine)})


@router.get("/sweeps/{name}", summary="One sweep: trials, summary, best configuration")
def sweep(caller: Viewer, name: str) -> Response:
    return json_response(explore.sweep_detail(caller.engine, name))


@router.get("/datasets", summary="Datasets with their images per class")
def datasets(caller: Viewer) -> Response:
    return json_response({"datasets": explore.list_datasets(caller.engine)})


@router.get("/datasets/{name}", summary="One dataset: classes, splits, samples, sources")
def dataset(caller: Viewer, name: str) -> Response:
    return json_response(explore.dataset_detail(caller.engine, name))


@router.get("/leaderboard", summary="The best runs of each dataset and class set")
def leaderboard(caller: Viewer, dataset: str | None = None) -> Response:
    return json_response(explore.leaderboard(caller.engine, dataset or None))


@router.get("/images/{image_id}.png", summary="One stored image, as PNG")
def image(caller: Viewer, image_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    png = explore.image_png(caller.engine, image_id)
    # Stored pixels never change: an image id always names the same picture.
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})


@router.get("/me", summary="Who this request is, as the server sees it")
def me(caller: Viewer) -> Response:
    return json_response({"name": caller.identity.name, "role": caller.identity.role})


@router.get(
    "/events/runs/{run_id}",
    summary="Server-sent events: a run's new points and lifecycle while it is live",
    response_class=StreamingResponse,
)
async def run_events(
    request: Request,
    caller: Viewer,
    run_id: RunId,
    since: Annotated[
        datetime | None, Query(description="Only points recorded after this time.")
    ] = None,
) -> StreamingResponse:
    # The first look happens before the response starts, so a missing run is a 404.
    first = await run_in_threadpool(explore.live_update, caller.engine, run_id, since)

    async def stream():
        update = first
        while True:
            yield f"event: update\ndata: {to_json(update)}\n\n"
            if update["status"] in ENDED and not update["more"]:
                yield "event: end\ndata: {}\n\n"
                return
            if not update["more"]:
                await asyncio.sleep(POLL_SECONDS)
            if await request.is_disconnected():
                return
            update = await run_in_threadpool(
                explore.live_update, caller.engine, run_id, update["cursor"]
            )

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def live_since(as_of: datetime) -> datetime:
    """Where a page's live updates start: a little before it read the run, so a flush that
    was committing meanwhile is not missed (the page drops points it already has)."""
    return as_of - timedelta(seconds=2)
