"""Reads for a dataset's page: a few image ids per class, and where the images came from.

No commits here; the pixels themselves are read by :func:`signdb.store.images.image_pixels`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def sample_ids(session: Session, dataset_id: int, per_class: int) -> dict[int, list[int]]:
    """``{label: the first image ids of that class}``, through the (dataset_id, label) index."""
    rows = session.execute(
        text(
            "SELECT c.label, coalesce(s.ids, '{}') FROM signdb.classes c "
            "CROSS JOIN LATERAL (SELECT array_agg(id) AS ids FROM ("
            "  SELECT i.id FROM signdb.images i WHERE i.dataset_id = c.dataset_id "
            "  AND i.label = c.label ORDER BY i.id LIMIT :n) x) s "
            "WHERE c.dataset_id = :d ORDER BY c.label"
        ),
        {"d": dataset_id, "n": per_class},
    )
    return {label: list(ids) for label, ids in rows}


def sources(session: Session, dataset_id: int, limit: int) -> dict[str, Any]:
    """Where a dataset's images came from: a few example sources, the fixed-split counts,
    and when the first and last images were loaded."""
    row = session.execute(
        text(
            "SELECT min(created_at), max(created_at), "
            "count(*) FILTER (WHERE split IS NOT NULL) FROM signdb.images WHERE dataset_id = :d"
        ),
        {"d": dataset_id},
    ).one()
    examples = session.execute(
        text("SELECT source FROM signdb.images WHERE dataset_id = :d ORDER BY id LIMIT :n"),
        {"d": dataset_id, "n": limit},
    ).scalars()
    return {
        "first_loaded": row[0],
        "last_loaded": row[1],
        "with_fixed_split": int(row[2]),
        "examples": list(examples),
    }
