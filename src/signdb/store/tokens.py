"""Reads and writes of ``signdb.api_tokens``: the server's tokens, kept as sha256 hashes.

No commits here. Only the hash of a token is ever written or compared; the
token itself exists in the caller's hands alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from signdb.db.schema import api_tokens


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: str
    created_at: datetime


def add_token(session: Session, name: str, role: str, token_hash: str) -> TokenRecord:
    row = session.execute(
        insert(api_tokens)
        .values(name=name, role=role, token_hash=token_hash)
        .returning(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at)
    ).one()
    return TokenRecord(*row)


def token_exists(session: Session, name: str) -> bool:
    return session.scalar(select(func.count()).where(api_tokens.c.name == name)) > 0


def list_tokens(session: Session) -> list[TokenRecord]:
    rows = session.execute(
        select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at).order_by(
            api_tokens.c.name
        )
    )
    return [TokenRecord(*row) for row in rows]


def count_tokens(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(api_tokens))


def delete_token(session: Session, name: str) -> bool:
    return session.execute(delete(api_tokens).where(api_tokens.c.name == name)).rowcount > 0


def find_by_hash(session: Session, token_hash: str) -> TokenRecord | None:
    row = session.execute(
        select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at).where(
            api_tokens.c.token_hash == token_hash
        )
    ).one_or_none()
    return None if row is None else TokenRecord(*row)
