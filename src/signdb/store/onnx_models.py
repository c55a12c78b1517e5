"""``signdb.onnx_models``: a model file stored with a run (``run.save_onnx``). No commits here."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def save_onnx(session: Session, run_id: int, model: bytes, sha256: str) -> None:
    """Store (or replace) the run's model file."""
    session.execute(
        text(
            "INSERT INTO signdb.onnx_models (run_id, model, sha256) VALUES (:r, :m, :s) "
            "ON CONFLICT (run_id) DO UPDATE SET model = EXCLUDED.model, "
            "sha256 = EXCLUDED.sha256, created_at = now()"
        ),
        {"r": run_id, "m": model, "s": sha256},
    )


def load_onnx(session: Session, run_id: int) -> tuple[bytes, str] | None:
    """(model bytes, sha256) of the run's stored file, or None."""
    row = session.execute(
        text("SELECT model, sha256 FROM signdb.onnx_models WHERE run_id = :r"), {"r": run_id}
    ).one_or_none()
    return None if row is None else (bytes(row[0]), row[1])
