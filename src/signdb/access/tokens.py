"""API tokens for ``signdb serve``: created once, kept as a sha256, checked on each request.

A token is 32 random bytes (``secrets.token_urlsafe``) behind the prefix
``sdb_``, so a leaked one is easy to recognise in logs and code. Random tokens
of that length need no slow password hash: their sha256 cannot be inverted,
and a lookup by hash compares no secret in Python.

>>> token, record = create_token(db.engine, "ci-bot", "viewer")
>>> token.startswith("sdb_"), record.role
(True, 'viewer')
>>> authenticate(db.engine, token)
Identity(name='ci-bot', role='viewer')
>>> authenticate(db.engine, "sdb_not-a-token") is None
True
>>> revoke_token(db.engine, "ci-bot")
>>> authenticate(db.engine, token) is None
True
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.db.schema import TOKEN_ROLES
from signdb.errors import InvalidArgument, NotFound
from signdb.store import datasets as ds_store
from signdb.store import tokens as token_store
from signdb.store.tokens import TokenRecord

ROLES = TOKEN_ROLES
PREFIX = "sdb_"


@dataclass(frozen=True)
class Identity:
    """Who a request comes from: a token's name (None: nobody signed in) and its role."""

    name: str | None
    role: str

    @property
    def editor(self) -> bool:
        return self.role == "editor"


#: A request without a token, on a server that lets such requests read.
ANONYMOUS = Identity(None, "viewer")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: str) -> tuple[str, TokenRecord]:
    """A new token for ``name`` with ``role``: (the token, shown once; its record)."""
    ds_store.check_name(name, "token name")
    if role not in ROLES:
        raise InvalidArgument(f"--role must be viewer or editor, got {role!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    with transaction(engine, f"creating token {name!r}") as session:
        if token_store.token_exists(session, name):
            raise InvalidArgument(
                f"a token named {name!r} exists; revoke it first (`signdb tokens revoke {name}`) "
                "or choose another name"
            )
        record = token_store.add_token(session, name, role, hash_token(token))
    return token, record


def list_tokens(engine: Engine) -> list[TokenRecord]:
    with transaction(engine, "listing tokens") as session:
        return token_store.list_tokens(session)


def count_tokens(engine: Engine) -> int:
    with transaction(engine, "counting tokens") as session:
        return token_store.count_tokens(session)


def revoke_token(engine: Engine, name: str) -> None:
    """Delete the token called ``name``: requests that carry it are refused from now on."""
    with transaction(engine, f"revoking token {name!r}") as session:
        if not token_store.delete_token(session, name):
            raise NotFound(f"no token named {name!r}; `signdb tokens list` shows them")


def authenticate(engine: Engine, token: str) -> Identity | None:
    """The identity ``token`` belongs to, or None when no such token exists."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with transaction(engine, "checking a token") as session:
        record = token_store.find_by_hash(session, hash_token(token))
    return None if record is None else Identity(record.name, record.role)
