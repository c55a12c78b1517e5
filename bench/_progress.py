"""Progress lines for long benchmarks: ``note("training cnn, seed 7")`` prints with the elapsed time.

``make bench`` runs for many minutes; a line per step shows it is alive and
where the time goes. Lines go to stderr, so the tables on stdout stay clean.
"""

from __future__ import annotations

import sys
import time

_started = time.monotonic()


def restart() -> None:
    """Start the clock again (the runner calls it as each benchmark begins)."""
    global _started
    _started = time.monotonic()


def note(message: str) -> None:
    print(f"   [{time.monotonic() - _started:6.1f} s] {message}", file=sys.stderr, flush=True)
