"""The ASGI app behind ``signdb serve``: the pages, ``/api/v1`` and the static assets.

FastAPI, served by uvicorn: its routes declare their parameters once, which
gives the OpenAPI document and the 422s naming a bad parameter for free, and
each route stays as thin as a CLI command (one capability call).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signdb import __version__
from signdb.server import api, errors, inference, pages, queue
from signdb.server.auth import ServerState
from signdb.server.settings import ServerSettings, is_loopback

STATIC = Path(__file__).parent / "static"

#: Every page loads only what this server serves: no CDN, no inline script.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def create_app(settings: ServerSettings) -> FastAPI:
    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        lifespan=lifespan,
        title="signdb",
        version=__version__,
        summary="Runs, metrics, evaluations, sweeps and datasets kept in PostgreSQL.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
    )
    app.state.signdb = state
    errors.install(app, pages.render_error)
    app.include_router(api.router)
    app.include_router(inference.router)
    app.include_router(queue.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.open and is_loopback(settings.host):
        # A page on another site can make a browser resolve its own name to 127.0.0.1
        # (DNS rebinding); an open server answers only to its loopback names.
        app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=["localhost", "127.0.0.1", "[::1]", "::1"]
        )
    app.add_middleware(ResponseHeaders)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory for each worker process of ``signdb serve --workers N``."""
    return create_app(ServerSettings.from_env())


class ResponseHeaders:
    """Security headers on every response, and ``Server-Timing: app;dur=<ms>``: the time
    the server spent before the first byte, which the benchmarks read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - start) * 1000
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                headers.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
