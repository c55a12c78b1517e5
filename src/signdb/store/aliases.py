"""``signdb.model_aliases`` and its history, and what makes a run servable. No commits here.

A trigger on ``model_aliases`` writes ``model_alias_events`` (revision 0014):
these functions never write the history themselves, so a change made in plain
SQL is recorded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Servable:
    """What serving needs to know about a run before it loads anything."""

    run_id: int
    engine: str  # numpy, torch or external
    model: str
    status: str
    has_final_weights: bool
    onnx_sha256: str | None


def lock_alias(session: Session, name: str) -> None:
    """Serialise changes to one alias until the transaction ends (the history stays exact)."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('signdb.model_alias'), hashtext(:n))"),
        {"n": name},
    )


def alias_run(session: Session, name: str) -> int | None:
    return session.scalar(
        text("SELECT run_id FROM signdb.model_aliases WHERE name = :n"), {"n": name}
    )


def set_alias(session: Session, name: str, run_id: int, who: str) -> datetime:
    """Create or re-point ``name``; returns its ``updated_at``."""
    return session.execute(
        text(
            "INSERT INTO signdb.model_aliases (name, run_id, updated_by) VALUES (:n, :r, :w) "
            "ON CONFLICT (name) DO UPDATE SET run_id = EXCLUDED.run_id, "
            "updated_by = EXCLUDED.updated_by, updated_at = now() "
            "RETURNING updated_at"
        ),
        {"n": name, "r": run_id, "w": who},
    ).scalar_one()


def delete_alias(session: Session, name: str, who: str) -> int | None:
    """Remove ``name``; returns the run it pointed at (None: there was no such alias)."""
    # The trigger reads the actor from this transaction-local setting.
    session.execute(text("SELECT set_config('signdb.actor', :w, true)"), {"w": who})
    return session.scalar(
        text("DELETE FROM signdb.model_aliases WHERE name = :n RETURNING run_id"), {"n": name}
    )


#: Every alias with its run; constant text, so a name only ever arrives as a parameter.
_ALIASES = """
    SELECT a.name, a.run_id, a.updated_at, a.updated_by, r.model, r.engine, d.name AS dataset,
           signdb.effective_status(r.status, r.heartbeat_at) AS status, r.test_accuracy,
           r.test_f1, o.sha256 IS NOT NULL AS has_onnx
    FROM signdb.model_aliases a
    JOIN signdb.runs r ON r.id = a.run_id
    JOIN signdb.datasets d ON d.id = r.dataset_id
    LEFT JOIN signdb.onnx_models o ON o.run_id = a.run_id
    WHERE a.name = :n OR CAST(:n AS text) IS NULL
    ORDER BY a.name
"""


def list_aliases(session: Session) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in session.execute(text(_ALIASES), {"n": None})]


def get_alias(session: Session, name: str) -> dict[str, Any] | None:
    row = session.execute(text(_ALIASES), {"n": name}).one_or_none()
    return None if row is None else dict(row._mapping)


def alias_history(session: Session, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The alias's changes, newest first, as ``model_alias_history`` shows them."""
    rows = session.execute(
        text(
            "SELECT run_id, previous_run_id, changed_by, changed_at, model, dataset "
            "FROM signdb.model_alias_history WHERE alias = :n "
            "ORDER BY changed_at DESC, event_id DESC LIMIT :l"
        ),
        {"n": name, "l": limit},
    )
    return [dict(row._mapping) for row in rows]


def aliases_of_run(session: Session, run_id: int) -> list[str]:
    """The aliases pointing at ``run_id``, by name: a run with any cannot be deleted."""
    return list(
        session.scalars(
            text("SELECT name FROM signdb.model_aliases WHERE run_id = :r ORDER BY name"),
            {"r": run_id},
        )
    )


def servable(session: Session, run_id: int) -> Servable | None:
    """The run's engine, final weights and stored ONNX model (None: no such run)."""
    row = session.execute(
        text(
            "SELECT r.id, r.engine, r.model, signdb.effective_status(r.status, r.heartbeat_at), "
            "EXISTS (SELECT 1 FROM signdb.weights w WHERE w.run_id = r.id AND w.final), "
            "o.sha256 "
            "FROM signdb.runs r LEFT JOIN signdb.onnx_models o ON o.run_id = r.id "
            "WHERE r.id = :r"
        ),
        {"r": run_id},
    ).one_or_none()
    return None if row is None else Servable(*row)


def resolve(session: Session, name: str, run_id: int | None) -> tuple[int, str | None] | None:
    """(run id, stored ONNX sha256 or None) of an alias, or of ``run_id`` when given.

    The one query a served request makes before it runs a cached model.
    """
    if run_id is not None:
        sql = (
            "SELECT r.id, o.sha256 FROM signdb.runs r "
            "LEFT JOIN signdb.onnx_models o ON o.run_id = r.id WHERE r.id = :r"
        )
    else:
        sql = (
            "SELECT a.run_id, o.sha256 FROM signdb.model_aliases a "
            "LEFT JOIN signdb.onnx_models o ON o.run_id = a.run_id WHERE a.name = :n"
        )
    row = session.execute(text(sql), {"r": run_id, "n": name}).one_or_none()
    return None if row is None else (int(row[0]), row[1])
