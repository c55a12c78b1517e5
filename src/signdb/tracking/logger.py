"""Buffered metric points and the heartbeat: the two things a run writes while it trains."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import defaultdict
from numbers import Real

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import retrying, transaction
from signdb.errors import InvalidArgument
from signdb.store import metrics as metric_store
from signdb.store import runs as run_store

HEARTBEAT_SECONDS = 5.0


def default_retry_seconds() -> float:
    """How long a run's writes keep retrying while the server is away (a restart, a
    failover): ``$SIGNDB_RETRY_SECONDS``, 60 by default."""
    raw = os.environ.get("SIGNDB_RETRY_SECONDS", "60")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(
            f"SIGNDB_RETRY_SECONDS must be a number of seconds, got {raw!r}"
        ) from None
    if not value >= 0:
        raise InvalidArgument(f"SIGNDB_RETRY_SECONDS must be >= 0, got {raw!r}")
    return value


def check_metric(name: object, value: object) -> float:
    """A metric's value as a float; a clear error for a bad name or a non-finite value."""
    if type(value) is float and math.isfinite(value) and type(name) is str and name:
        return value  # the common case, checked in a few hundred nanoseconds
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidArgument(f"metric names are non-empty text, got {name!r}")
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)):
        raise InvalidArgument(
            f"metric {name!r} must be a number, got {type(value).__name__} {value!r}"
        )
    v = float(value)
    if not math.isfinite(v):
        raise InvalidArgument(f"metric {name!r} is {v}; log finite numbers only")
    return v


#: Points wait at most about this long in the buffer: a live chart of the run
#: (``signdb serve``) is never further behind than this plus its own poll.
LIVE_SECONDS = 1.0


class MetricLogger:
    """Buffers metric points and writes them with one binary COPY per flush.

    A flush happens when ``max_rows`` points wait, when a call finds the
    oldest waiting for ``max_seconds``, and, between calls (a slow step), from
    a daemon thread that runs while points are being logged. A flush that
    fails because the server is away is retried for ``retry_seconds``; the
    buffer is kept until a write succeeds, so no point is lost. Safe to use
    from several threads.
    """

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        *,
        max_rows: int = 50_000,
        max_seconds: float = LIVE_SECONDS,
        retry_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.retry_seconds = default_retry_seconds() if retry_seconds is None else retry_seconds
        self._steps: dict[str, list[int]] = defaultdict(list)
        self._values: dict[str, list[float]] = defaultdict(list)
        self._by_names: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._pending = 0
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self.written = 0

    def log(self, step: int, name: str, value: float) -> None:
        with self._lock:
            self._steps[name].append(step)
            self._values[name].append(value)
            self._pending += 1
            due = self._pending >= self.max_rows
        if due or time.monotonic() - self._last_flush > self.max_seconds:
            self.flush()
        self._keep_flushing()

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Several metrics of one step: what ``run.log(step, **metrics)`` buffers.

        Steps are kept per set of metric names (a loop logs the same names every
        step): one ``append`` and one ``extend`` per call, and the values become
        numpy columns at flush time, so a training loop pays the least per call.
        """
        keys = tuple(metrics)
        with self._lock:
            buffer = self._by_names.get(keys)
            if buffer is None:
                buffer = self._by_names[keys] = ([], [])
            buffer[0].append(step)
            buffer[1].extend(metrics.values())
            self._pending += len(keys)
            due = self._pending >= self.max_rows
        if due or time.monotonic() - self._last_flush > self.max_seconds:
            self.flush()
        self._keep_flushing()

    def log_series(self, name: str, steps: np.ndarray, values: np.ndarray) -> None:
        """Many points of one metric at once (used by bulk importers and benchmarks)."""
        with self._lock:
            self._steps[name].extend(np.asarray(steps, dtype=np.int64).tolist())
            self._values[name].extend(np.asarray(values, dtype=np.float64).tolist())
            self._pending += len(steps)
            due = self._pending >= self.max_rows
        if due:
            self.flush()

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                series = {
                    name: (
                        np.asarray(self._steps[name], dtype=np.int32),
                        np.asarray(self._values[name]),
                    )
                    for name in self._steps
                }
                for name, (steps, values) in self._step_series().items():
                    if name in series:
                        steps = np.concatenate([series[name][0], steps])
                        values = np.concatenate([series[name][1], values])
                    series[name] = (steps, values)
                self.written += retrying(lambda: self._write(series), seconds=self.retry_seconds)
                self._steps.clear()
                self._values.clear()
                self._by_names.clear()
                self._pending = 0
            self._last_flush = time.monotonic()

    def _keep_flushing(self) -> None:
        """Start the flusher thread if it is not running (cheap when it is)."""
        if self._flusher is None:
            with self._lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_while_logging,
                        name=f"signdb-metrics-{self.run_id}",
                        daemon=True,
                    )
                    self._flusher.start()

    def _flush_while_logging(self) -> None:
        """Flush points that have waited ``max_seconds``; stop after a few idle rounds (a
        later call starts the thread again), so an ended run leaves no thread behind."""
        idle = 0
        while idle < 20:
            time.sleep(self.max_seconds / 4)
            if not self._pending:
                idle += 1
                continue
            idle = 0
            if time.monotonic() - self._last_flush >= self.max_seconds:
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the points stay buffered; the run's own
                    pass  # next flush retries them and reports a lasting failure
        with self._lock:
            self._flusher = None

    def _step_series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The buffered ``log_step`` calls as one (steps, values) series per metric."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for keys, (steps, flat) in self._by_names.items():
            step_array = np.asarray(steps, dtype=np.int32)
            values = np.asarray(flat, dtype=np.float64).reshape(len(steps), len(keys))
            for i, name in enumerate(keys):
                if name in out:
                    out[name] = (
                        np.concatenate([out[name][0], step_array]),
                        np.concatenate([out[name][1], values[:, i]]),
                    )
                else:
                    out[name] = (step_array, values[:, i])
        return out

    def _write(self, series: metric_store.Series) -> int:
        with transaction(self.engine, f"writing metrics of run {self.run_id}") as session:
            return metric_store.copy_metrics(session, self.run_id, series)


class Heartbeat:
    """Touches ``runs.heartbeat_at`` from a daemon thread while the run is open.

    A beat that fails (the server restarting) is simply tried again at the
    next interval; the run's own writes are what surface a lost database.
    """

    def __init__(self, engine: Engine, run_id: int, interval: float = HEARTBEAT_SECONDS) -> None:
        self.engine = engine
        self.run_id = run_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"signdb-heartbeat-{run_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with transaction(self.engine, "sending a heartbeat") as session:
                    run_store.heartbeat(session, self.run_id)
            except Exception:  # noqa: BLE001 - a missed beat must not kill training
                continue
