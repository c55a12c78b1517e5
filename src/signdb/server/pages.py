"""The web UI: server-rendered pages, each drawn from the same capability call as its
``/api/v1`` twin, with a little vendored JavaScript for charts and live updates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from signdb import explore, serving
from signdb.access import authenticate
from signdb.ml.scores import SCORE_NAMES
from signdb.queue import queue_overview
from signdb.server.api import live_since, run_query
from signdb.server.auth import COOKIE, Caller, identify, state_of, viewer
from signdb.server.encoding import to_json

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
Viewer = Annotated[Caller, Depends(viewer)]

NAV = [
    ("/", "Runs"),
    ("/leaderboard", "Leaderboard"),
    ("/sweeps", "Sweeps"),
    ("/datasets", "Datasets"),
]
RUN_COLUMNS = [
    ("run_id", "run"), ("name", "name"), ("status", "status"), ("dataset", "dataset"),
    ("model", "model"), ("engine", "engine"), ("test_accuracy", "test accuracy (95%)"),
    ("test_f1", "test F1"), ("val_accuracy", "val accuracy"), ("duration", "duration"),
    ("started_at", "started"), ("sweep", "sweep"),
]  # fmt: skip
NUMERIC = {"run_id", "test_accuracy", "test_f1", "val_accuracy", "duration"}
COOKIE_DAYS = 30


def render(
    request: Request, template: str, section: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    try:
        identity = identify(request)
    except Exception:  # noqa: BLE001 - an error page must render even when auth fails
        identity = None
    return templates.TemplateResponse(
        request,
        template,
        {
            "nav": NAV,
            "section": section,
            "identity": identity,
            "page": template.removesuffix(".html"),
            "status": status,
            **context,
        },
        status_code=status,
    )


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {403: "Not allowed", 404: "Not found", 422: "Bad request", 503: "Unavailable"}
    return render(
        request, "error.html", "", status=status, title=titles.get(status, "Error"), message=message
    )


@router.get("/", response_class=HTMLResponse)
def runs_page(
    request: Request, caller: Viewer, query: Annotated[explore.RunQuery, Depends(run_query)]
) -> HTMLResponse:
    data = explore.list_runs(caller.engine, query, with_choices=True)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("sort", "page")]

    def link(**change: Any) -> str:
        kept = {"sort": data["sort"], "page": data["page"], **change}
        return "/?" + urlencode(params + [(k, v) for k, v in kept.items()])

    sort_links = {
        key: link(sort=f"-{key}" if data["sort"] == key else key, page=1) for key, _ in RUN_COLUMNS
    }
    return render(
        request,
        "runs.html",
        "/",
        data=data,
        columns=RUN_COLUMNS,
        numeric=NUMERIC,
        sort_links=sort_links,
        page_links={"prev": link(page=data["page"] - 1), "next": link(page=data["page"] + 1)},
        json_link="/api/v1/runs?" + urlencode(request.query_params.multi_items()),
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request, caller: Viewer, run_id: int, split: Annotated[str | None, Query()] = None
) -> HTMLResponse:
    data = explore.run_detail(caller.engine, run_id)
    split = split if split in data["evaluations"] else next(iter(data["evaluations"]), "test")
    evaluation = data["evaluations"].get(split, {})
    cells = {(c["actual"], c["predicted"]): c["count"] for c in evaluation.get("confusion", [])}
    data["live_since"] = live_since(data["run"]["as_of"])
    data["split"] = split
    return render(
        request,
        "run.html",
        "/",
        data=data,
        split=split,
        cells=cells,
        cell_max=max(cells.values(), default=0),
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, caller: Viewer, runs: str = "") -> HTMLResponse:
    data = explore.compare_runs(caller.engine, explore.parse_run_ids(runs))
    diffs = {
        d["run_id"]: {(c["actual"], c["predicted"]): c["difference"] for c in d["cells"]}
        for d in data["confusion_difference"]
    }
    present = {m for r in data["runs"] for m in r["scores"]}
    return render(
        request,
        "compare.html",
        "/",
        data=data,
        diffs=diffs,
        score_names=[m for m in SCORE_NAMES if m in present],
    )


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page(request: Request, caller: Viewer) -> HTMLResponse:
    names = explore.list_sweeps(caller.engine)
    return render(
        request,
        "listing.html",
        "/sweeps",
        heading="Sweeps",
        items=[(f"/sweeps/{n}", n, "") for n in names],
        empty="No sweep yet: `signdb sweep create NAME --dataset D --model M --param ...`.",
    )


@router.get("/sweeps/{name}", response_class=HTMLResponse)
def sweep_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    return render(request, "sweep.html", "/sweeps", data=explore.sweep_detail(caller.engine, name))


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, caller: Viewer) -> HTMLResponse:
    found = explore.list_datasets(caller.engine)
    return render(
        request,
        "listing.html",
        "/datasets",
        heading="Datasets",
        items=[
            (
                f"/datasets/{d['name']}",
                d["name"],
                f"{d['images']} images, {len(d['labels'])} classes",
            )
            for d in found
        ],
        empty="No dataset yet: `signdb load PATH --dataset NAME`.",
    )


@router.get("/datasets/{name}", response_class=HTMLResponse)
def dataset_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    return render(
        request, "dataset.html", "/datasets", data=explore.dataset_detail(caller.engine, name)
    )


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(request: Request, caller: Viewer, dataset: str | None = None) -> HTMLResponse:
    return render(
        request,
        "leaderboard.html",
        "/leaderboard",
        data=explore.leaderboard(caller.engine, dataset or None),
    )


@router.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request, caller: Viewer) -> HTMLResponse:
    return render(request, "queue.html", "/queue", data={"runs": queue_overview(caller.engine)})


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, caller: Viewer) -> HTMLResponse:
    return render(
        request, "models.html", "/models", data={"models": serving.list_models(caller.engine)}
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002
    return render(request, "login.html", "", next=_local(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",  # noqa: A002
) -> Response:
    identity = authenticate(state_of(request).own_engine, token.strip())
    if identity is None:
        return render(
            request,
            "login.html",
            "",
            next=_local(next),
            error="That token is not valid (revoked, or mistyped).",
            status=401,
        )
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        max_age=COOKIE_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _local(target: str) -> str:
    """Only a path on this server: never an open redirect to another site."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


# -- template filters --------------------------------------------------------------------
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _jsonscript(value: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' left to parse."""
    text = to_json(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for a script data block


templates.env.filters.update(num=_num, duration=_duration, when=_when, jsonscript=_jsonscript)
