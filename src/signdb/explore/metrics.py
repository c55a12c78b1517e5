"""A run's metric series for charts: downsampled, whole as CSV, or what is new since a moment.

Short series come back point for point. Longer ones are cut to at most
``points`` by :func:`~signdb.explore.downsample.minmax`, read from the
points themselves up to :data:`POINTS_LIMIT` and beyond that from the
``metric_buckets`` summaries the logger writes with them, so a million-point
series costs about as much as a sixteen-thousand-point one.

>>> run_id = db.runs()[-1]["run_id"]
>>> history = metric_history(db.engine, run_id, "cost", points=10)
>>> history["metric"], history["points"], len(history["steps"]) <= 10
('cost', 20, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.db.schema import METRIC_BUCKET_WIDTHS
from signdb.errors import InvalidArgument, NotFound
from signdb.explore.downsample import Extremes, minmax
from signdb.store import metrics as metric_store
from signdb.store import runs as run_store

#: Series up to this many points are downsampled from the points; longer ones from buckets.
POINTS_LIMIT = 20_000
MAX_POINTS = 100_000
#: Points one live poll hands back at most; the next poll continues from the last.
LIVE_BATCH = 5_000


def metric_history(engine: Engine, run_id: int, name: str, *, points: int = 2000) -> dict[str, Any]:
    """At most ``points`` (step, value) pairs of one metric, keeping its shape."""
    if not 2 <= points <= MAX_POINTS:
        raise InvalidArgument(f"points must be from 2 to {MAX_POINTS}, got {points}")
    with transaction(engine, f"reading metric {name!r} of run {run_id}") as session:
        run_store.get_run(session, run_id)
        counts = metric_store.metric_points(session, run_id)
        total = _count(counts, run_id, name)
        if total <= POINTS_LIMIT:
            ranges, source = Extremes.of_points(*metric_store.series(session, run_id, name)), None
        else:
            width = next(
                (w for w in METRIC_BUCKET_WIDTHS if total / w <= POINTS_LIMIT),
                METRIC_BUCKET_WIDTHS[-1],
            )
            rows = metric_store.bucket_rows(session, run_id, name, width)
            ranges = Extremes(
                rows["first_step"], rows["min_step"], rows["min_value"],
                rows["max_step"], rows["max_value"],
            )  # fmt: skip
            source = width
    steps, values = minmax(ranges, points)
    return {
        "run_id": run_id,
        "metric": name,
        "points": total,
        "returned": len(steps),
        "downsampled": len(steps) < total,
        "from_buckets_of": source,
        "steps": steps.tolist(),
        "values": values.tolist(),
    }


def metric_csv(engine: Engine, run_id: int, name: str) -> Iterator[bytes]:
    """Every point of one metric as CSV (``step,value``), streamed from the database.

    Checked before the first byte (a missing run or metric raises here, not
    halfway through a response); then the rows stream inside one transaction.
    """
    with transaction(engine, f"reading metric {name!r} of run {run_id}") as session:
        run_store.get_run(session, run_id)
        _count(metric_store.metric_points(session, run_id), run_id, name)

    def stream() -> Iterator[bytes]:
        with transaction(engine, f"exporting metric {name!r} of run {run_id}") as session:
            yield from metric_store.csv_lines(session, run_id, name)

    return stream()


def live_update(engine: Engine, run_id: int, since: datetime | None) -> dict[str, Any]:
    """The run's lifecycle now, and the points recorded after ``since`` (None: every point,
    up to :data:`LIVE_BATCH`). ``cursor`` is what to pass as ``since`` next time."""
    with transaction(engine, f"watching run {run_id}") as session:
        record = run_store.get_run(session, run_id)
        rows = metric_store.points_since(session, run_id, since, LIVE_BATCH)
    return {
        "run_id": run_id,
        "status": record.status,
        "steps_done": record.steps_done,
        "total_steps": record.total_steps,
        "heartbeat_at": record.heartbeat_at,
        "error": record.error,
        "points": [{"metric": n, "step": s, "value": v} for n, s, v, _ in rows],
        "cursor": rows[-1][3] if rows else since,
        "more": len(rows) == LIVE_BATCH,
    }


def _count(counts: dict[str, int], run_id: int, name: str) -> int:
    if name not in counts:
        known = ", ".join(sorted(counts)) or "none yet"
        raise NotFound(f"run {run_id} has no metric {name!r}; its metrics: {known}")
    return counts[name]
