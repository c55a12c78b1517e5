"""Served predictions into ``signdb.served_predictions``, written off the request path.

A request hands its answers to :meth:`PredictionLog.record`, which only
samples them and appends arrays to a bounded in-memory buffer (no database, no
waiting); a writer thread flushes the buffer every ``interval`` seconds, or as
soon as ``batch_rows`` are waiting, with one binary COPY. When the database
is slow or away the buffer holds up to ``max_rows`` images; beyond that new
answers are dropped and counted (``dropped``), never queued without bound and
never allowed to slow a request.

Examples
--------
>>> import numpy as np
>>> log = PredictionLog(db.engine, fraction=1.0)
>>> log.record("champion", 1, np.array([[0.2, 0.8]], np.float32), np.array([1]), 3.5)
1
>>> log.close()
>>> log.written, log.dropped
(1, 0)
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.store.served import ServedBatch, copy_served

INTERVAL = 1.0
BATCH_ROWS = 2048
MAX_ROWS = 100_000
#: Longest wait between attempts while the database refuses the writes.
MAX_BACKOFF = 30.0


def check_fraction(fraction: float) -> float:
    """``--log-predictions FRACTION``: the share of served images to log, in [0, 1]."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 <= fraction <= 1
    ):
        raise InvalidArgument(
            f"--log-predictions takes the fraction of served images to log, from 0 to 1, got "
            f"{fraction!r}; e.g. --log-predictions 1 logs every image, 0.1 one in ten"
        )
    return float(fraction)


@dataclass
class LogStats:
    written: int = 0
    dropped: int = 0
    failures: int = 0
    last_error: str | None = None


class PredictionLog:
    """A bounded buffer of served predictions and the thread that writes it.

    ``engine`` must be allowed to INSERT into ``served_predictions`` (the
    server's own engine or a ``signdb_writer`` one, not a viewer's read-only one).
    """

    def __init__(
        self,
        engine: Engine,
        fraction: float = 1.0,
        *,
        interval: float = INTERVAL,
        batch_rows: int = BATCH_ROWS,
        max_rows: int = MAX_ROWS,
        seed: int | None = None,
    ) -> None:
        self.engine = engine
        self.fraction = check_fraction(fraction)
        self.interval = interval
        self.batch_rows = batch_rows
        self.max_rows = max_rows
        self.stats = LogStats()
        self._rng = np.random.default_rng(seed if seed is not None else random.getrandbits(64))
        self._buffer: deque[ServedBatch] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._written = threading.Condition(self._lock)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="signdb-prediction-log", daemon=True)
        self._thread.start()

    # -- the request side ---------------------------------------------------------
    def record(
        self,
        model: str,
        run_id: int,
        probabilities: np.ndarray,
        labels: np.ndarray,
        latency_ms: float,
        *,
        classes: Sequence[int] | None = None,
    ) -> int:
        """Queue a request's answers (a sample of them); returns how many images were kept.

        ``classes`` (the run's labels in column order) places each predicted
        label's probability, the row's confidence; without it the argmax (for
        two classes, the 0.5 decision) is taken to be the predicted column.
        """
        n = len(labels)
        if self.fraction >= 1.0:
            keep = slice(None)
            kept = n
        else:
            with self._lock:  # numpy's Generator is not thread-safe
                mask = self._rng.random(n) < self.fraction
            keep = np.flatnonzero(mask)
            kept = len(keep)
        if kept == 0 or self.fraction == 0.0:
            return 0
        proba = np.array(probabilities, np.float32)[keep]  # a copy: the caller owns its array
        predicted = np.asarray(labels, np.int64)[keep]
        if classes is not None:
            column = np.searchsorted(np.asarray(classes), predicted)
        else:
            column = _columns(proba, predicted)
        batch = ServedBatch(
            model=model,
            run_id=int(run_id),
            served_at_us=np.full(kept, time.time_ns() // 1000, np.int64),
            predicted=predicted.astype(np.int32),
            confidence=proba[np.arange(kept), column],
            probabilities=proba,
            latency_ms=np.full(kept, latency_ms, np.float32),
        )
        with self._lock:
            if self._closing or self._pending + kept > self.max_rows:
                self.stats.dropped += kept
                return 0
            self._buffer.append(batch)
            self._pending += kept
            if self._pending >= self.batch_rows:
                self._wake.notify()
        return kept

    # -- the writer side ----------------------------------------------------------
    @property
    def written(self) -> int:
        return self.stats.written

    @property
    def dropped(self) -> int:
        return self.stats.dropped

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until what was recorded before this call is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._wake.notify()
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._written.wait(left)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (for up to ``timeout`` seconds) and stop the writer."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.interval
        while True:
            with self._lock:
                if not self._closing and self._pending < self.batch_rows:
                    self._wake.wait(backoff)
                batches = list(self._buffer)
                closing = self._closing
            if batches:
                try:
                    self._write(batches)
                    backoff = self.interval
                except Exception as e:  # noqa: BLE001 - kept buffered; the next round tries again
                    self.stats.failures += 1
                    self.stats.last_error = str(e)
                    backoff = min(max(backoff, 0.25) * 2, MAX_BACKOFF)
                    if closing:
                        with self._lock:
                            self.stats.dropped += self._pending
                            self._buffer.clear()
                            self._pending = 0
                            self._written.notify_all()
                        return
            if closing and not self._pending:
                return

    def _write(self, batches: list[ServedBatch]) -> None:
        with transaction(self.engine, "logging served predictions") as session:
            rows = copy_served(session, batches)
        with self._lock:
            for _ in batches:  # the ones written are the oldest: record() only appends
                self._buffer.popleft()
            self._pending -= rows
            self.stats.written += rows
            self._written.notify_all()


def _columns(proba: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Column of each predicted label: the argmax, or for a binary run its 0.5 decision."""
    if proba.shape[1] == 2:
        return (proba[:, 1] >= 0.5).astype(np.intp)
    return np.argmax(proba, axis=1)
