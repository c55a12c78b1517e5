"""Image reads from hot standbys: which one a reader uses, and waiting until it has the run.

A run's split assignment (``run_images``) is written on the primary when the
run starts. A hot standby replays the primary's WAL a little later, so before
a run reads its images from one, :func:`wait_for_replay` takes the primary's
WAL position (at or past the assignment's commit) and waits until the
standby's ``pg_last_wal_replay_lsn()`` has passed it, for up to
``$SIGNDB_READ_WAIT_SECONDS`` (30 by default); past that it names the lag.
Then it checks that the standby holds the run's assignment, which also
catches a read URL that is no standby of this primary at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from sqlalchemy import Engine

from signdb.config import redact
from signdb.db.engine import transaction
from signdb.errors import ConfigError, InvalidArgument, StandbyBehind
from signdb.store import replication
from signdb.store import runs as run_store

DEFAULT_WAIT_SECONDS = 30.0


def wait_seconds() -> float:
    """``$SIGNDB_READ_WAIT_SECONDS``: how long a reader waits for a standby to catch up."""
    raw = os.environ.get("SIGNDB_READ_WAIT_SECONDS", str(DEFAULT_WAIT_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InvalidArgument(
            f"SIGNDB_READ_WAIT_SECONDS must be a number of seconds >= 0, got {raw!r}"
        )
    return value


def pick_standby(standbys: Sequence[Engine], run_id: int, rank: int = 0) -> Engine | None:
    """The standby rank ``rank`` of run ``run_id`` reads from: ranks, and runs, spread over them."""
    if not standbys:
        return None
    return standbys[(run_id + rank) % len(standbys)]


def wait_for_replay(
    primary: Engine,
    standby: Engine,
    run_id: int,
    sizes: dict[str, int],
    *,
    seconds: float | None = None,
) -> float:
    """Wait until ``standby`` holds run ``run_id``'s split assignment (``sizes`` per split,
    as the primary has it); returns the seconds waited.

    Raises :class:`StandbyBehind` naming the lag when it has not replayed far
    enough within ``seconds``, and :class:`ConfigError` when it is not a
    standby of ``primary`` (it does not have the run's images).
    """
    seconds = wait_seconds() if seconds is None else seconds
    where = redact(standby.url)
    with transaction(primary, f"reading the WAL position for run {run_id}") as session:
        target = replication.primary_lsn(session)
    started = time.monotonic()
    delay = 0.02
    while True:
        doing = f"checking how far the standby {where} has replayed for run {run_id}"
        with transaction(standby, doing) as session:
            position = replication.replay_position(session)
        # A server out of recovery (a primary, a promoted standby) has nothing to replay.
        behind = 0
        if position.in_recovery:
            replayed = replication.lsn_bytes(position.replayed or "0/0")
            behind = replication.lsn_bytes(target) - replayed
        if behind <= 0:
            break
        waited = time.monotonic() - started
        if waited + delay > seconds:
            age = position.replay_age_seconds
            last = "" if age is None else f", its last replayed commit is {age:.1f} s old"
            raise StandbyBehind(
                f"the standby {where} has replayed WAL to {position.replayed}, {behind:,} bytes "
                f"short of {target}, where run {run_id}'s split assignment is written on the "
                f"primary{last}; waited {waited:.1f} s (SIGNDB_READ_WAIT_SECONDS={seconds:g}). "
                "Check its replication (pg_stat_replication on the primary), wait longer, or "
                "read from the primary (drop --read-database-url / SIGNDB_READ_DATABASE_URL)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    with transaction(standby, f"reading run {run_id}'s split on the standby {where}") as session:
        found = run_store.split_sizes(session, run_id)
    if any(found.get(split, 0) != n for split, n in sizes.items()):
        raise ConfigError(
            f"the read server {where} does not hold run {run_id}'s split assignment "
            f"({sum(found.values())} of {sum(sizes.values())} images); --read-database-url "
            "and SIGNDB_READ_DATABASE_URL must name hot standbys of --database-url's server"
        )
    return time.monotonic() - started
