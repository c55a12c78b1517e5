"""Where a hot standby's replay stands against its primary's WAL. No commits here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class ReplayPosition:
    """A server's recovery state: ``replayed`` is None on a primary (nothing to replay)."""

    in_recovery: bool
    replayed: str | None  # pg_lsn as text, e.g. '0/3000148'
    replay_age_seconds: float | None  # since the last replayed commit's timestamp


def primary_lsn(session: Connection | Session) -> str:
    """The primary's WAL insert position: at or past the end of every committed transaction."""
    return session.execute(text("SELECT CAST(pg_current_wal_insert_lsn() AS text)")).scalar_one()


def replay_position(session: Connection | Session) -> ReplayPosition:
    row = session.execute(
        text(
            "SELECT pg_is_in_recovery(), CAST(pg_last_wal_replay_lsn() AS text), "
            "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
        )
    ).one()
    age = None if row[2] is None else float(row[2])
    return ReplayPosition(bool(row[0]), row[1], age)


def lsn_bytes(lsn: str) -> int:
    """A ``pg_lsn`` text ('16/B374D848') as a byte position, for differences."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)
