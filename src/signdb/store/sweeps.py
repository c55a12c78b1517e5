"""Reads and writes of ``signdb.sweeps``, a sweep's runs, and the few reads of schema ``optuna``
that Optuna's API does not offer (orphaned trials, counts by state). No commits here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from signdb.db.schema import sweeps
from signdb.errors import NotFound


@dataclass(frozen=True)
class Sweep:
    """A sweep's settings: everything ``sweep work NAME`` needs besides the name."""

    name: str
    dataset_id: int
    model: str
    engine: str
    classes: list[int]
    space: dict[str, Any]  # name -> Space.as_dict()
    fixed: dict[str, Any]  # hyperparameters held fixed
    sampler: str
    objective: str
    trials: int
    repeats: int
    seed: int
    test_fraction: float
    val_fraction: float
    split: str
    pruner: dict[str, Any]
    heartbeat_seconds: int
    grace_seconds: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoredSweep(Sweep):
    dataset: str = ""
    created_at: datetime | None = None


_FIELDS = tuple(Sweep.__dataclass_fields__)


def lock_name(session: Session, name: str) -> None:
    """Serialise ``sweep create`` of one name until the transaction ends."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('signdb.sweep:' || :n))"), {"n": name}
    )


def create_sweep(session: Session, sweep: Sweep) -> None:
    session.execute(insert(sweeps).values(**sweep.as_dict()))


def find_sweep(session: Session, name: str) -> StoredSweep | None:
    row = session.execute(
        text(
            "SELECT s.*, d.name AS dataset FROM signdb.sweeps s "
            "JOIN signdb.datasets d ON d.id = s.dataset_id WHERE s.name = :n"
        ),
        {"n": name},
    ).one_or_none()
    if row is None:
        return None
    m = row._mapping
    return StoredSweep(
        **{f: m[f] for f in _FIELDS}, dataset=m["dataset"], created_at=m["created_at"]
    )


def get_sweep(session: Session, name: str) -> StoredSweep:
    found = find_sweep(session, name)
    if found is None:
        known = list_names(session)
        hint = f"the sweeps are {', '.join(known[:10])}" if known else "there are no sweeps yet"
        raise NotFound(
            f"no sweep named {name!r} ({hint}); `signdb sweep create {name} --dataset ...` "
            "makes one"
        )
    return found


def list_names(session: Session) -> list[str]:
    return list(session.scalars(select(sweeps.c.name).order_by(sweeps.c.name)))


def link_run(session: Session, run_id: int, sweep: str, trial_number: int, repeat: int) -> None:
    """Mark a run as repeat ``repeat`` of the sweep's trial ``trial_number``."""
    session.execute(
        text(
            "UPDATE signdb.runs SET sweep = :s, trial_number = :t, sweep_repeat = :r WHERE id = :id"
        ),
        {"s": sweep, "t": trial_number, "r": repeat, "id": run_id},
    )


def interrupt_runs_of_failed_trials(session: Session, sweep: str, why: str) -> int:
    """Runs that still read 'running' although their trial failed (its worker died)."""
    return session.execute(
        text(
            "UPDATE signdb.runs r SET status = 'interrupted', finished_at = now(), "
            "error = coalesce(r.error, :why) "
            "FROM optuna.trials t JOIN optuna.studies st ON st.study_id = t.study_id "
            "WHERE st.study_name = :s AND t.state = 'FAIL' AND r.sweep = :s "
            "AND r.trial_number = t.number AND r.status = 'running'"
        ),
        {"s": sweep, "why": why},
    ).rowcount


def orphaned_trials(session: Session, sweep: str, grace_seconds: int) -> list[int]:
    """Trial ids RUNNING for longer than the grace period without one heartbeat.

    Optuna's ``fail_stale_trials`` never looks at them: a worker killed between
    claiming a trial and its first beat would leave it running forever.
    Optuna 5 stores ``datetime_start`` as naive UTC.
    """
    return list(
        session.scalars(
            text(
                "SELECT t.trial_id FROM optuna.trials t "
                "JOIN optuna.studies st ON st.study_id = t.study_id "
                "LEFT JOIN optuna.trial_heartbeats h ON h.trial_id = t.trial_id "
                "WHERE st.study_name = :s AND t.state = 'RUNNING' AND h.trial_id IS NULL "
                "AND t.datetime_start < (now() AT TIME ZONE 'UTC') - make_interval(secs => :g)"
            ),
            {"s": sweep, "g": grace_seconds},
        )
    )


def trial_states(session: Session, sweep: str) -> dict[str, int]:
    """Trials of the sweep by Optuna state, lower case: {"complete": 10, "running": 2, ...}."""
    rows = session.execute(
        text(
            "SELECT lower(t.state::text), count(*) FROM optuna.trials t "
            "JOIN optuna.studies st ON st.study_id = t.study_id "
            "WHERE st.study_name = :s GROUP BY 1"
        ),
        {"s": sweep},
    )
    return {state: int(n) for state, n in rows}


def summary_rows(session: Session, sweep: str) -> list[dict[str, Any]]:
    """``sweep_summary`` for one sweep, best mean objective first."""
    rows = session.execute(
        text(
            "SELECT * FROM signdb.sweep_summary WHERE sweep = :s "
            "ORDER BY objective_mean DESC NULLS LAST, params::text"
        ),
        {"s": sweep},
    )
    return [dict(r._mapping) for r in rows]


def trial_rows(session: Session, sweep: str) -> list[dict[str, Any]]:
    """``sweep_trials`` for one sweep: one row per trial and repeat run."""
    rows = session.execute(
        text(
            "SELECT * FROM signdb.sweep_trials WHERE sweep = :s "
            "ORDER BY trial_number, repeat NULLS FIRST"
        ),
        {"s": sweep},
    )
    return [dict(r._mapping) for r in rows]
