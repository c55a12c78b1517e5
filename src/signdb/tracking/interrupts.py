"""SIGINT and SIGTERM while a run is open: raised where the code is, or a flag for its loop.

A :class:`~signdb.tracking.run.Run` takes both signals over for its ``with``
block (in the main thread). In ``raise`` mode a signal raises
:class:`~signdb.errors.RunInterrupted` where the code is, except inside one of
signdb's own writes (a COPY in flight), where it waits for the write to end: the
connection is never left half-way through the protocol. In ``flag`` mode it
only sets :attr:`Interrupts.requested`, which the built-in trainer checks
between steps so that it can checkpoint first. Another thread asks for the same
stop with :meth:`Interrupts.request`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from signdb.errors import InvalidArgument, RunInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
MODES = ("raise", "flag")


class Interrupts:
    """One run's stop requests: a signal that arrived, or a reason from another thread.

    ``ended`` says whether the run has already ended; a signal held back by a
    write is not raised after that.
    """

    def __init__(
        self, run_id: int, mode: str, resume_hint: str | None, ended: Callable[[], bool]
    ) -> None:
        if mode not in MODES:
            raise InvalidArgument(f"signals must be 'raise' or 'flag', got {mode!r}")
        self.run_id = run_id
        self.mode = mode
        #: How to go on after an interruption ("{run_id}" is replaced), or None.
        self.resume_hint = resume_hint
        self.signal: int | None = None
        self.reason: str | None = None
        #: > 0 while signdb itself writes: a signal waits for the end (raise mode).
        self.critical = 0
        self.deferred = False
        self._ended = ended
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take SIGINT and SIGTERM over (only the main thread can)."""
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Give the signals back to the handlers they had."""
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signal = signum
        if self.mode != "raise":
            return
        if self.critical:
            self.deferred = True  # raised once the write is done
            return
        raise RunInterrupted(self.message())

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold SIGINT/SIGTERM (raise mode) until the block's writes are complete."""
        self.critical += 1
        try:
            yield
        finally:
            self.critical -= 1
        self.raise_deferred()

    def raise_deferred(self) -> None:
        """Raise a signal held back by a write, once no write is in flight."""
        if self.deferred and not self.critical and not self._ended():
            self.deferred = False
            raise RunInterrupted(self.message())

    @property
    def requested(self) -> bool:
        return self.signal is not None or self.reason is not None

    def request(self, reason: str) -> None:
        self.reason = reason

    def message(self) -> str:
        """The interruption as the run's error text, with how to resume when known."""
        if self.reason is not None and self.signal is None:
            return f"run {self.run_id} interrupted: {self.reason}"
        name = signal.Signals(self.signal).name if self.signal else "a signal"
        message = f"run {self.run_id} interrupted by {name}"
        if not self.resume_hint:
            return message
        return f"{message}; {self.resume_hint.format(run_id=self.run_id)}"
