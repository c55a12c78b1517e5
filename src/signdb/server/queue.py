"""The run queue over HTTP: submit (editors), cancel (editors), and what is queued or running.

Each route is one :mod:`signdb.queue` call on the caller's engine: an editor's
acts as ``signdb_writer``, so a viewer's request could not queue or cancel a run
even if it reached the code (the database refuses the write).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import Response

from signdb.api import Database
from signdb.errors import InvalidArgument
from signdb.queue import cancel_run, queue_overview
from signdb.server.auth import Caller, editor, viewer
from signdb.server.encoding import json_response

router = APIRouter(prefix="/api/v1", tags=["queue"])
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A run's id.")]


@router.post("/runs", summary="Submit a run to the queue (editors only)", status_code=201)
def submit(
    caller: Annotated[Caller, Depends(editor)],
    request: Annotated[
        dict[str, Any],
        Body(
            description="`signdb train`'s arguments by name (dataset, model, classes, engine, "
            "device, seed, test_fraction, val_fraction, split, name and the model's "
            "hyperparameters such as lr or iterations), plus queue and priority.",
            examples=[{"dataset": "digits", "model": "cnn", "classes": "all", "queue": "gpu"}],
        ),
    ],
) -> Response:
    args = dict(request)
    dataset = args.pop("dataset", None)
    if not isinstance(dataset, str):
        raise InvalidArgument('a run needs "dataset": the name of a loaded dataset')
    queue = args.pop("queue", "default")
    run_id = Database(caller.engine).submit(dataset, queue=queue, **args)
    return json_response({"run_id": run_id, "status": "queued", "queue": queue}, 201)


@router.post("/runs/{run_id}/cancel", summary="Cancel a queued or running run (editors only)")
def cancel(caller: Annotated[Caller, Depends(editor)], run_id: RunId) -> Response:
    return json_response(cancel_run(caller.engine, run_id))


@router.get("/queue", summary="Queued and running submitted runs, running first")
def queue(caller: Annotated[Caller, Depends(viewer)]) -> Response:
    return json_response({"runs": queue_overview(caller.engine)})
