"""One run, several processes: the run as a rank other than 0 sees it.

Rank 0 records a distributed run: its metrics, checkpoints, weights,
heartbeat and outcome. Every other rank opens the same run with
:func:`~signdb.tracking.start.join_run` and gets a :class:`JoinedRun`: it
reads the run's data like any run, and its writes are no-ops, so the same
training code runs on every rank. Each rank holds a
:class:`~signdb.tracking.lease.RankLease` while it trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from signdb.db.engine import transaction
from signdb.errors import RunInterrupted, SignDBError
from signdb.store import runs as run_store
from signdb.tracking.run import Run


class _NoHeartbeat:
    def start(self) -> None: ...

    def stop(self) -> None: ...


class JoinedRun(Run):
    """A run that rank 0 records, as another rank sees it: reads as usual, writes nothing.

    ``log``, ``save_weights``, ``checkpoint``, ``log_predictions`` and the
    ``record_*`` calls do nothing here (reduce what you log to rank 0 first:
    ``torch.distributed.all_reduce``). An exception leaving the ``with``
    block marks the run failed, naming this rank, unless another rank
    recorded a failure first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heartbeat = _NoHeartbeat()  # rank 0 beats for the run

    @property
    def writes(self) -> bool:
        return False

    def _record_exit(self, exc: BaseException | None) -> bool:
        if self._status is not None:
            return False
        if exc is None:
            self._status = "succeeded"
        elif isinstance(exc, (RunInterrupted, KeyboardInterrupt)):
            self._status = "interrupted"
        else:
            error = str(exc) if isinstance(exc, SignDBError) else f"{type(exc).__name__}: {exc}"
            message = self.lease.explain(error) if self.lease is not None else error
            try:
                with transaction(self.engine, f"marking run {self.id} failed") as session:
                    run_store.fail_if_running(session, self.id, message[:10_000])
            except SignDBError:
                pass  # rank 0 or the heartbeat will record the run's end
            self._status = "failed"
        return False

    def log(self, step: int, **metrics: float) -> None:
        self._check_open()

    def save_weights(
        self, step: int, tensors: Mapping[str, np.ndarray], *, final: bool = False
    ) -> None:
        self._check_open()

    def checkpoint(
        self, step: int, tensors: Mapping[str, np.ndarray], *, final: bool, total_steps: int
    ) -> None:
        self._check_open()

    def record_progress(self, steps_done: int, total_steps: int | None = None) -> None:
        return None

    def record_accuracy(
        self, *, train: float | None, test: float | None, val: float | None = None
    ) -> None:
        return None

    def log_predictions(self, split: str, image_ids: Any, probabilities: Any, **_: Any) -> int:
        self._check_open()
        return 0
