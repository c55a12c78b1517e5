"""Every failure as the right status and one message naming the bad thing.

API routes (``/api/``, ``/v2/``) answer ``{"error": "..."}``; pages answer an
HTML page with the same message. PostgreSQL being away is a 503 that clears
by itself: the pools ping before reuse, so the first request after the
server returns gets a fresh connection.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import exc
from starlette.exceptions import HTTPException

from signdb.errors import (
    DatabaseError,
    InputError,
    NotFound,
    PermissionDenied,
    SignDBError,
    SweepError,
)
from signdb.server.auth import AuthError
from signdb.server.encoding import json_response
from signdb.server.inference import PROTOCOL_PREFIXES
from signdb.serving import http_status as protocol_status

log = logging.getLogger("signdb.server")

#: The driver errors of a request that tried to do more than its role may.
REFUSED = (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)


def install(app: FastAPI, render_error) -> None:  # noqa: ANN001 - (request, status, message) -> HTML
    """Register the handlers on ``app``; ``render_error`` draws the HTML page of an error."""

    def answer(request: Request, status: int, message: str) -> Response:
        if _wants_json(request):
            return json_response({"error": message}, status)
        if status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return render_error(request, status, message)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, e: AuthError) -> Response:
        return answer(request, e.status, str(e))

    @app.exception_handler(SignDBError)
    async def _ours(request: Request, e: SignDBError) -> Response:
        if request.url.path.startswith(PROTOCOL_PREFIXES) and not isinstance(e, PermissionDenied):
            return answer(request, protocol_status(e), str(e))
        return answer(request, status_of(e), str(e))

    @app.exception_handler(exc.DBAPIError)
    async def _driver(request: Request, e: exc.DBAPIError) -> Response:
        if isinstance(e.orig, REFUSED):
            detail = str(e.orig).strip().splitlines()[0]
            return answer(request, 403, f"the database refused this for your role: {detail}")
        raise e

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        return answer(request, 422, describe_validation(e))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=e)
        return answer(
            request, 500, f"internal error ({type(e).__name__}); the server's log has the details"
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException) -> Response:
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404:
            message = f"nothing at {request.url.path}; the API's routes are in /api/v1/openapi.json"
        return answer(request, e.status_code, message)


def status_of(error: SignDBError) -> int:
    if isinstance(error, PermissionDenied):  # the database refused the caller's role
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InputError):
        return 422
    if isinstance(error, DatabaseError | SweepError):
        return 503
    return 500


def describe_validation(error: RequestValidationError) -> str:
    """The first bad parameter, named: ``query parameter 'page': ... (got 'x')``."""
    parts = []
    for problem in error.errors():
        where, *names = problem.get("loc", ("request",))
        name = ".".join(str(n) for n in names) or "body"
        got = f" (got {problem['input']!r})" if "input" in problem and names else ""
        parts.append(f"{where} parameter {name!r}: {problem.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "the request is not valid"


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/v2/", "/invocations")) or "html" not in request.headers.get(
        "accept", ""
    )
