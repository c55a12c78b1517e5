"""Who a request comes from, and the engine it may use: the database decides the rest.

A request carries a token in ``Authorization: Bearer`` or, from a browser
that signed in at ``/login``, in the HTTP-only cookie ``signdb_token``. A
viewer's request gets an engine acting as ``signdb_analyst`` in read-only
transactions; an editor's, one acting as ``signdb_writer``
(:mod:`signdb.db.role_engines`). Without a token, a server on a loopback
address lets the request read, as a viewer; any other server refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from fastapi import Request
from sqlalchemy import Engine

from signdb.access import ANONYMOUS, Identity, authenticate
from signdb.db.engine import get_engine
from signdb.db.role_engines import EDITOR, VIEWER, role_engine
from signdb.server.settings import ServerSettings
from signdb.serving import PredictionLog

COOKIE = "signdb_token"


class AuthError(Exception):
    """A request that is not allowed: 401 (who are you?) or 403 (not with that token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServerState:
    """What every request of one app shares: the settings and the engines (pools)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    @cached_property
    def own_engine(self) -> Engine:
        """The server's own login: tokens are checked here, and nothing else runs on it."""
        return get_engine(self.settings.database_url)

    def engine_for(self, identity: Identity) -> Engine:
        return role_engine(self.settings.database_url, EDITOR if identity.editor else VIEWER)

    @cached_property
    def prediction_log(self) -> PredictionLog | None:
        """Where served predictions go (None: ``--log-predictions 0``). The server writes
        them itself, as ``signdb_writer``, whoever asked for the prediction."""
        if not self.settings.log_predictions:
            return None
        writer = role_engine(self.settings.database_url, EDITOR)
        return PredictionLog(writer, self.settings.log_predictions)

    def close(self) -> None:
        """Write what the prediction log still holds (at shutdown)."""
        if "prediction_log" in self.__dict__ and self.prediction_log is not None:
            self.prediction_log.close()


@dataclass(frozen=True)
class Caller:
    """A request's identity and the engine that acts as its role."""

    identity: Identity
    engine: Engine


def state_of(request: Request) -> ServerState:
    return request.app.state.signdb


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def identify(request: Request) -> Identity:
    """The request's identity; an AuthError when it has none the server accepts."""
    state = state_of(request)
    token = token_of(request)
    if token is None:
        if state.settings.open:
            return ANONYMOUS
        raise AuthError(
            401,
            "this server needs a token: send `Authorization: Bearer <token>` or sign in at "
            "/login (`signdb tokens create NAME --role viewer` makes one)",
        )
    identity = authenticate(state.own_engine, token)
    if identity is None:
        raise AuthError(
            401,
            "the token is not valid (revoked, or mistyped); `signdb tokens list` shows the "
            "tokens, and `signdb tokens create` makes a new one",
        )
    return identity


def viewer(request: Request) -> Caller:
    """Any identity the server accepts; reads as the identity's role."""
    identity = identify(request)
    _check_origin(request)
    return Caller(identity, state_of(request).engine_for(identity))


def editor(request: Request) -> Caller:
    """An editor's token: writes as ``signdb_writer``."""
    identity = identify(request)
    if not identity.editor:
        who = "no token" if identity.name is None else f"token {identity.name!r} is a viewer's"
        raise AuthError(
            401 if identity.name is None else 403,
            f"this needs an editor token ({who}); `signdb tokens create NAME --role editor`",
        )
    _check_origin(request)
    return Caller(identity, state_of(request).engine_for(identity))


def _check_origin(request: Request) -> None:
    """A browser's state-changing request must come from our own pages.

    The cookie is SameSite=Strict already; checking Origin as well refuses a
    cross-site form post from an older browser. Requests with a bearer token
    carry no ambient credentials and need no check.
    """
    if request.method in ("GET", "HEAD", "OPTIONS") or "authorization" in request.headers:
        return
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise AuthError(403, f"refused a cross-site request from {origin}")
