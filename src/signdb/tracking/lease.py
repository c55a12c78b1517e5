"""Which ranks of a distributed run are alive: :class:`RankLease`, one database lock per rank.

Each rank holds a PostgreSQL session lock (see :mod:`signdb.store.ranks`)
while it trains. When a rank dies its lock goes with its connection, and the
rank that notices (a collective operation fails) names the dead rank in the
run's error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy import Connection, Engine

from signdb.db.engine import transaction, translate_errors
from signdb.errors import RankFailed, SignDBError
from signdb.store import ranks as rank_store

#: How long a rank that saw a collective fail waits for a dead peer's lock to go.
DEATH_NOTICE_SECONDS = 3.0


class RankLease:
    """Rank ``rank`` of ``world_size`` of run ``run_id``, held while the rank trains."""

    def __init__(self, engine: Engine, run_id: int, rank: int, world_size: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self.rank = rank
        self.world_size = world_size
        #: rank -> "pid 123 on host" once the ranks have told each other (see set_peers).
        self.peers: dict[int, str] = {}
        self._conn: Connection | None = None
        self._dead: list[int] | None = None  # found by the first explain()

    def acquire(self) -> None:
        doing = f"taking rank {self.rank}'s lock of run {self.run_id}"
        with translate_errors(self.engine, doing):
            conn = self.engine.connect()
            held = rank_store.hold_rank(conn, self.run_id, self.rank)
            conn.commit()
        if not held:
            conn.close()
            raise RankFailed(
                f"rank {self.rank} of run {self.run_id} is already taken by another process; "
                "is a second launch of this run still going? Stop it first"
            )
        self._conn = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            rank_store.release_rank(conn, self.run_id, self.rank)
            conn.commit()
        except Exception:  # noqa: BLE001 - closing the connection releases it anyway
            pass
        finally:
            conn.close()

    def set_peers(self, peers: Mapping[int, str]) -> None:
        self.peers = dict(peers)

    def dead_ranks(self, wait: float = DEATH_NOTICE_SECONDS) -> list[int]:
        """The other ranks whose lock is gone, waiting up to ``wait`` s for one to go."""
        deadline = time.monotonic() + wait
        while True:
            try:
                with transaction(self.engine, f"checking the ranks of run {self.run_id}") as s:
                    alive = rank_store.live_ranks(s, self.run_id)
            except SignDBError:
                return []
            dead = sorted(set(range(self.world_size)) - alive - {self.rank})
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.1)

    def name(self, rank: int) -> str:
        peer = self.peers.get(rank)
        return f"rank {rank} of {self.world_size}" + (f" ({peer})" if peer else "")

    def explain(self, message: str) -> str:
        """``message`` with the rank it comes from, or the dead rank that caused it.

        Only once the ranks have exchanged their names (:meth:`set_peers`, after
        every rank took its lock) does a missing lock mean a dead rank.
        """
        if self._dead is None:
            self._dead = self.dead_ranks() if self.peers else []
        dead = self._dead
        if not dead:
            return f"{self.name(self.rank)}: {message}"
        who = ", ".join(self.name(r) for r in dead)
        return (
            f"{who} died (its connection to PostgreSQL closed); {self.name(self.rank)} "
            f"then stopped: {message}"
        )
