"""A run's life cycle in PostgreSQL: heartbeat, batched metrics, checkpoints, finish/fail.

Every write here commits on its own short transaction, so what a run has
reported survives the process being killed; the heartbeat lets the next
command tell a live run from a dead one.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.store import runs as run_store
from signdb.store import weights as weight_store

HEARTBEAT_SECONDS = 5.0


class MetricLogger:
    """Buffers metric points and writes them with one COPY per flush."""

    def __init__(
        self, engine: Engine, run_id: int, *, max_rows: int = 50_000, max_seconds: float = 5.0
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self._steps: dict[str, list[int]] = defaultdict(list)
        self._values: dict[str, list[float]] = defaultdict(list)
        self._pending = 0
        self._last_flush = time.monotonic()
        self.written = 0

    def log(self, step: int, name: str, value: float) -> None:
        self._steps[name].append(step)
        self._values[name].append(value)
        self._pending += 1
        if self._pending >= self.max_rows or time.monotonic() - self._last_flush > self.max_seconds:
            self.flush()

    def log_series(self, name: str, steps: np.ndarray, values: np.ndarray) -> None:
        """Many points of one metric at once (used by bulk importers and benchmarks)."""
        self._steps[name].extend(np.asarray(steps, dtype=np.int64).tolist())
        self._values[name].extend(np.asarray(values, dtype=np.float64).tolist())
        self._pending += len(steps)
        if self._pending >= self.max_rows:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            series = {
                name: (
                    np.asarray(self._steps[name], dtype=np.int32),
                    np.asarray(self._values[name]),
                )
                for name in self._steps
            }
            with transaction(self.engine) as session:
                self.written += weight_store.copy_metrics(session, self.run_id, series)
            self._steps.clear()
            self._values.clear()
            self._pending = 0
        self._last_flush = time.monotonic()


class Heartbeat:
    """Touches ``runs.heartbeat_at`` from a daemon thread while the run trains."""

    def __init__(self, engine: Engine, run_id: int, interval: float = HEARTBEAT_SECONDS) -> None:
        self.engine = engine
        self.run_id = run_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"signdb-heartbeat-{run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with transaction(self.engine) as session:
                    run_store.heartbeat(session, self.run_id)
            except Exception:  # noqa: BLE001 - a missed beat must not kill training;
                # the trainer's own writes surface a lost database.
                continue


class RunTracker:
    """What the trainer calls at each point of a run's life."""

    def __init__(self, engine: Engine, run_id: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self.metrics = MetricLogger(engine, run_id)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(self.engine, self.run_id)

    def checkpoint(
        self,
        step: int,
        tensors: Mapping[str, np.ndarray],
        *,
        final: bool = False,
        total_steps: int | None = None,
    ) -> None:
        # Metrics first: a checkpoint never claims progress whose metrics were lost.
        self.metrics.flush()
        with transaction(self.engine) as session:
            weight_store.save_tensors(session, self.run_id, step, tensors, final=final)
            run_store.record_progress(
                session, self.run_id, steps_done=step, total_steps=total_steps
            )

    def succeed(self, *, train_accuracy: float | None, test_accuracy: float | None) -> None:
        self.metrics.flush()
        with transaction(self.engine) as session:
            run_store.record_accuracy(
                session, self.run_id, train=train_accuracy, test=test_accuracy
            )
            run_store.set_status(session, self.run_id, "succeeded")

    def interrupt(self) -> None:
        self.metrics.flush()
        with transaction(self.engine) as session:
            run_store.set_status(
                session,
                self.run_id,
                "interrupted",
                error=f"interrupted by a signal; resume with `signdb train --resume {self.run_id}`",
            )

    def fail(self, error: BaseException) -> None:
        """Best effort: record the failure even if the metrics cannot be flushed."""
        message = f"{type(error).__name__}: {error}"
        try:
            self.metrics.flush()
        except Exception as flush_error:  # noqa: BLE001 - the original error matters more
            message += f" (and {len(self.metrics._steps)} metric series were lost: {flush_error})"
        for attempt in range(3):
            try:
                with transaction(self.engine) as session:
                    run_store.set_status(session, self.run_id, "failed", error=message[:10_000])
                return
            except Exception:  # noqa: BLE001 - the database may be restarting; retry briefly
                time.sleep(1.0 * (attempt + 1))
