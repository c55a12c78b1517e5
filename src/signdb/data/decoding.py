"""Decode image files into pixels, in a bounded process pool, in input order.

JPEG decoding is the bottleneck of a load, so formats that point at files
(folder trees, CSV manifests) hand :class:`DecodeTask` items to
:func:`decode_stream`, which decodes them in chunks across worker processes
with a bounded number of chunks in flight: memory stays flat however large the
input, and the output order is the input order.

The workers start as they would from an interactive session: they never re-run
the caller's ``__main__`` (see :func:`_main_hidden`), so ``db.load`` works from a
plain script without an ``if __name__ == "__main__":`` guard, from ``python -m``,
``python -c``, stdin or a notebook, and the ``signdb`` command's workers skip its
imports.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import sys
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from signdb.data.preprocess import Preprocessing, decode_image, pixels_sha256
from signdb.data.samples import Rejection, Sample
from signdb.errors import ImageError, NotFound

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Files per task sent to a worker: large enough to amortise pickling and
#: scheduling, small enough that the first results arrive quickly.
CHUNK_SIZE = 32
#: Chunks in flight per worker; bounds memory while keeping every core busy.
_IN_FLIGHT_PER_WORKER = 4
# Never "fork": the caller (the loader) holds database connections and
# possibly threads, which a forked child would inherit in an undefined state.
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_MAIN_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodeTask:
    """One image to decode: from ``path`` on disk, or from ``data`` already in memory."""

    source: str  # what to call it in a Sample or Rejection
    class_key: str
    path: str | None = None
    data: bytes | None = None
    split: str | None = None


Task = DecodeTask | Rejection


def load_image_file(path: str | Path, prep: Preprocessing) -> np.ndarray:
    """Decode one JPEG/PNG file into stored pixels (used by ``signdb predict`` too)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no such image file: {p}; check the path") from None
    except OSError as e:
        raise ImageError(
            str(p), f"cannot read the file ({e.strerror}); check its permissions"
        ) from None
    return decode_image(data, str(p), prep)


def _run_task(task: Task, prep: Preprocessing) -> Sample | Rejection:
    if isinstance(task, Rejection):
        return task
    try:
        if task.data is not None:
            pixels = decode_image(task.data, task.source, prep)
        else:
            pixels = load_image_file(task.path, prep)
    except ImageError as e:
        return Rejection(task.source, e.reason)
    except NotFound:
        return Rejection(task.source, "file disappeared while loading; re-run the load")
    return Sample(task.source, task.class_key, pixels, pixels_sha256(pixels), task.split)


def _run_chunk(tasks: list[Task], prep: Preprocessing) -> list[Sample | Rejection]:
    # Runs in a worker: it reads the bytes itself, so only paths (or the
    # encoded bytes) and the small decoded arrays cross the process boundary.
    return [_run_task(t, prep) for t in tasks]


def _chunks(tasks: Iterator[Task], n: int) -> Iterator[list[Task]]:
    while chunk := list(islice(tasks, n)):
        yield chunk


@contextmanager
def _main_hidden() -> Iterator[None]:
    """While a worker starts, ``__main__`` looks like an interactive session's.

    A forkserver or spawn child first re-runs its parent's ``__main__`` by path
    or by module name (``multiprocessing.spawn.get_preparation_data``), unless
    it has neither, as in a REPL or a notebook. A user's script without a main
    guard would then call ``db.load`` again inside every worker, which fails
    with ``BrokenProcessPool``; ``python -`` names a file that does not exist.
    The workers only run this module's functions, so they need nothing from
    ``__main__``. The module object keeps its identity (pickling the user's own
    functions still works); only the two attributes that are read are hidden,
    for the moment the process is launched.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _MAIN_LOCK:
        saved = {name: vars(main)[name] for name in ("__file__", "__spec__") if name in vars(main)}
        main.__spec__ = None  # multiprocessing reads it unguarded; None is a REPL's value
        vars(main).pop("__file__", None)
        try:
            yield
        finally:
            vars(main).pop("__spec__", None)
            vars(main).update(saved)


_BASE_CONTEXT = multiprocessing.get_context(_START_METHOD)


class _WorkerProcess(_BASE_CONTEXT.Process):  # type: ignore[name-defined,misc]
    """A process of the start method, launched under :func:`_main_hidden`.

    Module-level: the forkserver pickles the process object to its child.
    """

    @staticmethod
    def _Popen(process_obj):  # noqa: ANN001, ANN205, N802 - multiprocessing's hook
        with _main_hidden():
            return _BASE_CONTEXT.Process._Popen(process_obj)


class _WorkerContext(type(_BASE_CONTEXT)):  # type: ignore[misc]
    Process = _WorkerProcess


def decode_stream(
    tasks: Iterator[Task], prep: Preprocessing, workers: int
) -> Iterator[Sample | Rejection]:
    """Samples for ``tasks`` in their order; ``workers=1`` decodes in this process."""
    if workers > 1 and getattr(multiprocessing.current_process(), "_inheriting", False):
        # This process is itself a worker still re-running its parent's
        # __main__ (the user's own pool, over a script that loads unguarded):
        # multiprocessing forbids starting processes until that is done.
        warnings.warn(
            "signdb: decoding in one process, because this process is a multiprocessing "
            "worker still importing its parent's __main__; put the load under "
            "`if __name__ == '__main__':` to decode in parallel",
            RuntimeWarning,
            stacklevel=2,
        )
        workers = 1
    if workers == 1:
        for chunk in _chunks(tasks, CHUNK_SIZE):
            yield from _run_chunk(chunk, prep)
        return
    ctx = _WorkerContext()
    if _START_METHOD == "forkserver":
        # The server imports numpy and Pillow once; each worker forked from it
        # then starts in milliseconds instead of re-importing them.
        ctx.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        pending: deque = deque()
        for chunk in _chunks(tasks, CHUNK_SIZE):
            pending.append(pool.submit(_run_chunk, chunk, prep))
            # Ordered like imap, but never more than a few chunks ahead of the
            # consumer (a slow COPY must not make decoded images pile up).
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
