"""A run's life in PostgreSQL: open, log, checkpoint, and end as succeeded, failed or interrupted.

:class:`Run` is what the built-in trainer and people's own training code both
write through. Entering it starts a heartbeat and (in the main thread) takes
over SIGINT and SIGTERM; leaving it stores the outcome:

* a normal exit: ``succeeded``;
* an exception: ``failed``, with the error's text, and the exception propagates;
* SIGINT or SIGTERM: ``interrupted``. By default the signal raises
  :class:`~signdb.errors.RunInterrupted` where the code is; the built-in trainer
  instead asks for a flag (``signals="flag"``) that it checks between steps, so
  it can checkpoint first.

Every write commits on its own short transaction, so what a run has reported
survives the process being killed, and writes are retried with backoff while
the server is away (:func:`signdb.db.engine.retrying`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from sqlalchemy import Engine

from signdb.db.engine import retrying, transaction
from signdb.errors import InvalidArgument, RunClosed, RunInterrupted, SignDBError
from signdb.ml.metrics import DEFAULT_THRESHOLDS, parse_thresholds
from signdb.store import onnx_models as onnx_store
from signdb.store import runs as run_store
from signdb.store import weights as weight_store
from signdb.tracking.checks import check_split, check_step, check_tensors
from signdb.tracking.data import RunData
from signdb.tracking.interrupts import Interrupts
from signdb.tracking.logger import Heartbeat, MetricLogger, check_metric, default_retry_seconds
from signdb.tracking.onnx_model import check_onnx_model
from signdb.tracking.pool import ImagePool
from signdb.tracking.predictions import (
    BOOTSTRAP,
    check_bootstrap,
    record_predictions,
    scored_from_user,
)

if TYPE_CHECKING:
    from signdb.tracking.lease import RankLease

T = TypeVar("T")


class Run:
    """One run, open for logging: made by ``db.start_run(...)``, used as a context manager.

    ``run.id`` is the run's id and ``run.classes`` its labels, in the order of
    the probability columns ``log_predictions`` takes.

    >>> with db.start_run("shapes", "doc:run", val_fraction=0.25) as run:
    ...     for epoch in range(2):
    ...         for X, y in run.batches("train", batch_size=8, epoch=epoch):
    ...             pass
    ...         run.log(epoch, loss=1.0 / (epoch + 1))
    >>> run.status, run.classes
    ('succeeded', [0, 1])
    """

    def __init__(
        self,
        engine: Engine,
        record: run_store.Run,
        shape: tuple[int, int, int],
        *,
        cache: str = "auto",
        signals: str = "raise",
        resume_hint: str | None = None,  # "{run_id}" is replaced by the run's id
        retry_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
        pool: ImagePool | None = None,
        standby: Engine | None = None,
        lease: RankLease | None = None,
    ) -> None:
        self._interrupts = Interrupts(
            record.id, signals, resume_hint, ended=lambda: self._status is not None
        )
        self.engine = engine
        self.record = record
        self.id = record.id
        #: Labels in probability-column order (ascending).
        self.classes: list[int] = sorted(record.classes)
        self.retry_seconds = default_retry_seconds() if retry_seconds is None else retry_seconds
        self.data = RunData(
            engine,
            record.id,
            shape,
            self.classes,
            record.seed,
            cache,
            self.retry_seconds,
            pool,
            standby=standby,
        )
        #: This process's rank lock of a distributed run (None for one process).
        self.lease = lease
        self.rank = 0 if lease is None else lease.rank
        self.world_size = record.world_size
        self.metrics = MetricLogger(engine, record.id, retry_seconds=self.retry_seconds)
        self._heartbeat = Heartbeat(engine, record.id, **_interval(heartbeat_seconds))
        self._status: str | None = None  # set once the run has ended
        self._entered = False

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Run:
        self._check_open()
        if self._entered:
            raise InvalidArgument(f"run {self.id} is already open; use it in one `with` block")
        self._entered = True
        if self.lease is not None:
            self.lease.acquire()
        self._heartbeat.start()
        self._interrupts.install()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        self._interrupts.restore()
        self._heartbeat.stop()
        try:
            return self._record_exit(exc)
        finally:
            if self.lease is not None:
                self.lease.release()

    @property
    def writes(self) -> bool:
        """Whether this process records the run (rank 0); other ranks' writes are no-ops."""
        return True

    def _record_exit(self, exc: BaseException | None) -> bool:
        if self._status is not None:
            return False
        if exc is None:
            self._end("succeeded")
        elif isinstance(exc, (RunInterrupted, KeyboardInterrupt)):
            self._end("interrupted", self._interrupts.message())
        else:
            self._end_failed(exc)
        return False  # exceptions propagate

    @property
    def stop_requested(self) -> bool:
        """True once SIGINT or SIGTERM arrived (with ``signals="flag"``), or
        :meth:`request_stop` was called."""
        return self._interrupts.requested

    def request_stop(self, reason: str) -> None:
        """Ask the training loop to stop at its next step, as a signal would; safe from
        any thread. The run then ends ``interrupted`` with ``reason`` as its error.

        >>> with db.start_run("shapes", "doc:stop") as run:
        ...     run.request_stop("the sweep was cancelled")
        ...     run.stop_requested
        True
        """
        self._interrupts.request(reason)

    @property
    def resume_hint(self) -> str | None:
        """How to go on after an interruption ("{run_id}" is replaced), or None."""
        return self._interrupts.resume_hint

    @property
    def status(self) -> str:
        return self._status or "running"

    def _check_open(self) -> None:
        if self._status is not None:
            raise RunClosed(
                f"run {self.id} has ended ({self._status}); start a new run to log more"
            )

    # -- writing ---------------------------------------------------------------------
    def _write(self, doing: str, fn: Callable[[Any], T]) -> T:
        """``fn(session)`` in one transaction, retried while the server is away."""

        def attempt() -> T:
            with transaction(self.engine, f"{doing} of run {self.id}") as session:
                return fn(session)

        with self._interrupts.held():
            return retrying(attempt, seconds=self.retry_seconds)

    def log(self, step: int, **metrics: float) -> None:
        """Record ``metrics`` at ``step``; buffered and written with binary COPY.

        >>> with db.start_run("shapes", "doc:log") as run:
        ...     run.log(0, loss=0.69, val_accuracy=0.5)
        ...     run.log(1, loss=0.41)
        >>> run.status
        'succeeded'
        """
        if self._status is not None:
            self._check_open()
        step = check_step(step)
        for value in metrics.values():
            # Finite floats are what a loop logs; anything else is checked (and named) below.
            if type(value) is not float or value - value != 0.0:
                metrics = {name: check_metric(name, v) for name, v in metrics.items()}
                break
        interrupts = self._interrupts
        interrupts.critical += 1  # inlined held(): run.log is the hot path
        try:
            self.metrics.log_step(step, metrics)
        finally:
            interrupts.critical -= 1
        if interrupts.deferred:
            interrupts.raise_deferred()

    def log_metric(self, key: str, value: float, step: int) -> None:
        """MLflow's spelling of :meth:`log`.

        >>> with db.start_run("shapes", "doc:log_metric") as run:
        ...     run.log_metric("loss", 0.5, step=0)
        """
        self.log(step, **{key: value})

    def save_weights(
        self, step: int, tensors: Mapping[str, np.ndarray], *, final: bool = False
    ) -> None:
        """Store ``tensors`` (name -> array) as the checkpoint at ``step``, replacing any there.

        >>> import numpy as np
        >>> with db.start_run("shapes", "doc:weights") as run:
        ...     run.save_weights(10, {"fc.weight": np.ones((2, 256), np.float32)}, final=True)
        """
        self._check_open()
        step = check_step(step)
        arrays = check_tensors(tensors)
        with self._interrupts.held():
            self.metrics.flush()  # a checkpoint never claims progress whose metrics were lost
        self._write(
            "saving weights",
            lambda s: weight_store.save_tensors(s, self.id, step, arrays, final=final),
        )

    def save_onnx(self, model: bytes | str | Path) -> str:
        """Store an ONNX model with the run (its bytes, or a path): the run becomes servable.

        The model takes one float32 input ``[N, H, W, C]`` in [0, 1] (what
        :meth:`arrays` gives) and outputs class probabilities ``[N, K]`` in
        :attr:`classes` order; it is run on two images before it is stored, so
        one that does not fit is refused here. ``signdb serve`` and ``signdb
        export`` then use this file. Returns its sha256 (docs/serving.md has an example).

        >>> with db.start_run("shapes", "doc:onnx") as run:
        ...     run.save_onnx(b"not a model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        signdb.errors.InvalidArgument: not an ONNX model ...
        """
        self._check_open()
        data, digest = check_onnx_model(model, self.data.shape, len(self.classes))
        self._write(
            "saving an ONNX model", lambda s: onnx_store.save_onnx(s, self.id, data, digest)
        )
        return digest

    def checkpoint(
        self, step: int, tensors: Mapping[str, np.ndarray], *, final: bool, total_steps: int
    ) -> None:
        """Weights and progress in one transaction, as the built-in trainer checkpoints.

        >>> import numpy as np
        >>> with db.start_run("shapes", "doc:checkpoint") as run:
        ...     run.checkpoint(50, {"w": np.zeros(3, np.float32)}, final=False, total_steps=100)
        >>> db.run(run.id)["steps_done"], db.run(run.id)["total_steps"]
        (50, 100)
        """
        self._check_open()
        with self._interrupts.held():
            self.metrics.flush()

        def write(session: Any) -> None:
            weight_store.save_tensors(session, self.id, step, tensors, final=final)
            run_store.record_progress(session, self.id, steps_done=step, total_steps=total_steps)

        self._write("writing a checkpoint", write)

    def record_progress(self, steps_done: int, total_steps: int | None = None) -> None:
        """How far the run is (``runs.steps_done``/``total_steps``), for progress views.

        >>> with db.start_run("shapes", "doc:progress") as run:
        ...     run.record_progress(3, 10)
        >>> db.run(run.id)["steps_done"]
        3
        """
        self._write(
            "recording progress",
            lambda s: run_store.record_progress(
                s, self.id, steps_done=steps_done, total_steps=total_steps
            ),
        )

    def record_accuracy(
        self, *, train: float | None, test: float | None, val: float | None = None
    ) -> None:
        """The headline accuracies ``run_summary`` shows (``train``, ``val``, ``test``).

        >>> with db.start_run("shapes", "doc:accuracy") as run:
        ...     run.record_accuracy(train=0.99, test=0.9)
        >>> db.run(run.id)["test_accuracy"]
        0.9
        """
        self._write(
            "recording accuracy",
            lambda s: run_store.record_accuracy(s, self.id, train=train, test=test, val=val),
        )

    def log_predictions(
        self,
        split: str,
        image_ids: Sequence[int] | np.ndarray,
        probabilities: np.ndarray,
        *,
        thresholds: str = DEFAULT_THRESHOLDS,
        bootstrap: int = BOOTSTRAP,
    ) -> int:
        """Write a split's predictions and evaluation rows, exactly as ``signdb evaluate`` does.

        ``probabilities`` is (n, k), one row per image id, columns in
        :attr:`classes` order. Everything is checked first; a bad call writes
        nothing. Returns the number of evaluation rows. The split's scores
        (``run_scores``) get ``bootstrap`` resamples' 95% intervals (0: none),
        and its curves and calibration bins are written too. Afterwards the run has
        its headline metrics and its place on the leaderboard (for the test split).

        >>> import numpy as np
        >>> with db.start_run("shapes", "doc:uniform") as run:
        ...     X, y, ids = run.arrays("test")
        ...     proba = np.full((len(ids), 2), 0.5)
        ...     rows = run.log_predictions("test", ids, proba)
        >>> rows  # a binary run: one row per threshold of 0:1:0.01
        101
        """
        self._check_open()
        split = check_split(split)
        sweep = parse_thresholds(thresholds)
        bootstrap = check_bootstrap(bootstrap)
        with self._interrupts.held():
            self.metrics.flush()

        def write(session: Any) -> int:
            scored = scored_from_user(
                session, self.id, split, image_ids, probabilities, self.classes
            )
            return record_predictions(session, self.id, self.classes, scored, sweep, bootstrap)

        return self._write("logging predictions", write)

    # -- reading ---------------------------------------------------------------------
    def batches(
        self, split: str, batch_size: int | None = 64, *, shuffle: bool = True, epoch: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X float32 NHWC in [0, 1], y class indices) batches covering ``split`` once.

        ``shuffle`` orders the images for ``epoch`` the same way every time
        (as ``DistributedSampler.set_epoch`` does); streamed from PostgreSQL,
        or from memory when the run's images fit the cache.

        >>> with db.start_run("shapes", "doc:batches") as run:
        ...     sizes = [len(y) for X, y in run.batches("train", batch_size=8, epoch=0)]
        >>> sum(sizes) == run.record.train_size and max(sizes) <= 8
        True
        """
        self._check_open()
        return self.data.batches(check_split(split), batch_size, shuffle=shuffle, epoch=epoch)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole ``split`` in id order: (X float32 NHWC, y class indices, image ids).

        >>> with db.start_run("shapes", "doc:arrays") as run:
        ...     X, y, ids = run.arrays("test")
        >>> X.dtype, X.shape[1:], len(y) == len(ids)
        (dtype('float32'), (16, 16, 1), True)
        """
        self._check_open()
        from signdb.ml.base import pixels_to_float

        arrays = self.data.split(check_split(split))
        return pixels_to_float(arrays.pixels), self.data.index(arrays.labels), arrays.ids

    # -- ending ----------------------------------------------------------------------
    def _end(self, status: str, error: str | None = None) -> None:
        self._interrupts.deferred = False
        try:
            self.metrics.flush()
        except Exception as flush_error:  # noqa: BLE001 - the outcome matters more
            status, error = "failed", f"{error or ''} metrics were lost: {flush_error}".strip()
        self._write(
            f"marking it {status}",
            lambda s: run_store.set_status(s, self.id, status, error=error),
        )
        self._status = status

    def _end_failed(self, exc: BaseException) -> None:
        """Best effort: the original error matters more than a failure to record it."""
        message = str(exc) if isinstance(exc, SignDBError) else f"{type(exc).__name__}: {exc}"
        if self.lease is not None:  # a distributed run: say which rank died, if one did
            message = self.lease.explain(message)
            if self.resume_hint:
                message += f"; {self.resume_hint.format(run_id=self.id)}"
        try:
            self.metrics.flush()
        except Exception as flush_error:  # noqa: BLE001
            message += f" (and {self.metrics.pending} metric points were lost: {flush_error})"
        for attempt in range(3):
            try:
                with transaction(self.engine, f"marking run {self.id} failed") as session:
                    if self.lease is None:
                        run_store.set_status(session, self.id, "failed", error=message[:10_000])
                    else:  # another rank may have recorded the failure at its source first
                        run_store.fail_if_running(session, self.id, message[:10_000])
                break
            except Exception:  # noqa: BLE001 - the database may be restarting; retry briefly
                time.sleep(1.0 * (attempt + 1))
        self._status = "failed"


def _interval(seconds: float | None) -> dict[str, float]:
    return {} if seconds is None else {"interval": seconds}
