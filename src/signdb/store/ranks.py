"""Which ranks of a distributed run are alive: one session advisory lock per rank. No commits here.

Each rank holds ``pg_advisory_lock(hashtext('signdb.rank:<run>'), <rank>)`` on
a connection of its own for as long as it trains. PostgreSQL releases a
session lock when its connection ends, and the kernel ends the connection of
a process that dies in any way (SIGKILL included), so the ranks whose locks
are gone from ``pg_locks`` are the ranks that died: the database itself says
which one, on any machine, with no clock to trust.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

_KEY = "hashtext('signdb.rank:' || CAST(:run AS text))"


def hold_rank(conn: Connection | Session, run_id: int, rank: int) -> bool:
    """Take rank ``rank``'s lock of run ``run_id`` on this connection; False if another holds it."""
    return bool(
        conn.execute(
            text(f"SELECT pg_try_advisory_lock({_KEY}, :rank)"),  # noqa: S608 - constant
            {"run": run_id, "rank": rank},
        ).scalar_one()
    )


def release_rank(conn: Connection | Session, run_id: int, rank: int) -> None:
    conn.execute(
        text(f"SELECT pg_advisory_unlock({_KEY}, :rank)"),  # noqa: S608 - constant
        {"run": run_id, "rank": rank},
    )


def live_ranks(session: Connection | Session, run_id: int) -> set[int]:
    """The ranks of run ``run_id`` whose processes still hold their lock."""
    rows = session.execute(
        text(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "  # noqa: S608 - constant
            f"AND granted AND classid = CAST({_KEY} AS oid) "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"run": run_id},
    )
    return {int(r[0]) for r in rows}
