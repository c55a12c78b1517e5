"""Read a load's input into a stream of :class:`Sample` and :class:`Rejection`.

Three layouts are accepted, directly or inside a ``.zip``:

* a folder per label: ``ROOT/<label>/<image>.jpg|.jpeg|.png`` (any case), where
  ``<label>`` is a non-negative integer written plainly (``0``, ``7``, ``12``);
* an ``X.npy`` / ``Y.npy`` pair: X is ``(n, h, w)`` or ``(n, h, w, c)``, uint8 or
  float in [0, 1]; Y is ``(n,)`` class indices or ``(n, k)`` one-hot rows;
* a zip holding either of them (optionally inside one wrapper folder).

One bad image never stops a load: it becomes a :class:`Rejection` with a reason
a person can act on. Only an input that is unusable as a whole raises.

Files are decoded in a process pool (JPEG decoding is the bottleneck of a load),
in chunks, with a bounded number of chunks in flight, so memory stays flat
however large the input and the output order is the sorted order of the paths.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path, PurePosixPath

import numpy as np

from signdb.data.archives import check_member, open_zip, safe_extract_zip
from signdb.data.arrays import load_npy, npy_rows
from signdb.data.labels import MAX_LABEL, label_of_row, parse_label
from signdb.data.preprocess import Preprocessing, decode_image, pixels_sha256, preprocess_array
from signdb.errors import (
    ArrayError,
    ImageError,
    InputError,
    InvalidArgument,
    NotFound,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Files per task sent to a worker: large enough to amortise pickling and
#: scheduling, small enough that the first results arrive quickly.
CHUNK_SIZE = 32
#: Chunks in flight per worker; bounds memory while keeping every core busy.
_IN_FLIGHT_PER_WORKER = 4
# Never "fork": the caller (the loader) holds database connections and
# possibly threads, which a forked child would inherit in an undefined state.
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"

_LAYOUTS = (
    "expected a folder with one subfolder per label (e.g. 0/a.jpg, 1/b.png), "
    "an X.npy + Y.npy pair, or a .zip of either"
)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Sample:
    source: str
    label: int
    pixels: np.ndarray
    sha256: str


@dataclass(frozen=True)
class Rejection:
    source: str  # a path, or "X.npy[17]" for one row of an array
    reason: str


@dataclass(frozen=True)
class _Decode:
    path: str  # where to read the bytes
    source: str  # what to call it in a Sample or Rejection
    label: int


_Task = _Decode | Rejection


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


def iter_samples(
    path: str | Path,
    prep: Preprocessing,
    *,
    workers: int = 2,
    progress: Progress | None = None,
) -> Iterator[Sample | Rejection]:
    """Stream every input of ``path`` as a Sample or a Rejection, in sorted order.

    Whole-input problems (missing path, nothing loadable, unusable X/Y arrays,
    unsafe zip) raise at call time, before anything is yielded. ``progress`` is
    called with 1 for every item yielded, so ``count_inputs(path)`` is its total.
    ``workers=1`` decodes in this process.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"workers must be a positive integer, got {workers!r}; pass e.g. 2")
    src = _open_input(Path(path))
    return _stream(src, prep, workers, progress)


def count_inputs(path: str | Path) -> int:
    """How many items :func:`iter_samples` will yield; cheap (lists files, reads npy headers)."""
    p = Path(path)
    _check_exists(p)
    if _is_zip(p):
        with open_zip(p) as zf:
            for info in zf.infolist():
                check_member(info, p)
            files, dirs = _zip_listing(zf)
            root = _find_root(files, dirs)
            if root.npy:
                with zf.open(_join(root.prefix, "X.npy")) as f:
                    return npy_rows(f, p)
            return sum(1 for _ in _tree_tasks(files, dirs, root.prefix, str, str))
    src = _open_input(p)
    try:
        if src.x is not None:
            return int(np.load(src.x, mmap_mode="r", allow_pickle=False).shape[0])
        return sum(1 for _ in src.tasks())
    finally:
        src.close()


# --- resolving the input -------------------------------------------------------


@dataclass(frozen=True)
class _Root:
    prefix: str  # posix path of the data root inside the listing ("" = top)
    npy: bool


class _Input:
    """A resolved local input: a label tree or an X/Y pair, maybe in a temp dir."""

    def __init__(
        self,
        base: Path,
        display: Callable[[str], str],
        files: list[str],
        dirs: set[str],
        root: _Root,
        tmp: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self.base, self.display, self.files, self.dirs, self.root = base, display, files, dirs, root
        self._tmp = tmp
        self.x: Path | None = None
        self.y: Path | None = None
        if root.npy:
            self.x = base / _join(root.prefix, "X.npy")
            self.y = base / _join(root.prefix, "Y.npy")

    def tasks(self) -> Iterator[_Task]:
        return _tree_tasks(
            self.files, self.dirs, self.root.prefix, lambda r: str(self.base / r), self.display
        )

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _check_exists(p: Path) -> None:
    if not p.exists():
        raise NotFound(
            f"no such file or folder: {p}; check the path, or download the reference "
            "dataset with `signdb datasets fetch`"
        )


def _is_zip(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".zip"


def _open_input(p: Path) -> _Input:
    _check_exists(p)
    if p.is_dir():
        files, dirs = _dir_listing(p)
        src = _Input(p, lambda r: str(p / r), files, dirs, _find_root(files, dirs))
    elif _is_zip(p):
        # TemporaryDirectory cleans itself up on garbage collection too, so an
        # abandoned, never-started iterator does not leak the extracted files.
        tmp = tempfile.TemporaryDirectory(prefix="signdb-zip-")
        try:
            safe_extract_zip(p, tmp.name)
            files, dirs = _dir_listing(Path(tmp.name))
            root = _find_root(files, dirs)
        except BaseException:
            tmp.cleanup()
            raise
        src = _Input(Path(tmp.name), lambda r: f"{p}:{r}", files, dirs, root, tmp)
    elif p.name in ("X.npy", "Y.npy"):
        files, dirs = _dir_listing(p.parent, recursive=False)
        src = _Input(p.parent, lambda r: str(p.parent / r), files, dirs, _find_root(files, dirs))
        if not src.root.npy or src.root.prefix:
            raise InputError(
                f"{p} needs its partner {'Y.npy' if p.name == 'X.npy' else 'X.npy'} "
                "in the same folder; put both there"
            )
    else:
        raise InputError(f"cannot load {p}: {_LAYOUTS}")
    if src.x is not None:
        try:
            _check_arrays(src)
        except BaseException:
            src.close()
            raise
    return src


def _hidden(name: str) -> bool:
    # OS metadata (.DS_Store, macOS zips' __MACOSX/), never data.
    return name.startswith(".") or name == "__MACOSX"


def _dir_listing(base: Path, *, recursive: bool = True) -> tuple[list[str], set[str]]:
    files: list[str] = []
    dirs: set[str] = set()
    stack = [base]
    while stack:
        d = stack.pop()
        for e in d.iterdir():
            if _hidden(e.name):
                continue
            rel = e.relative_to(base).as_posix()
            if e.is_dir():
                dirs.add(rel)
                if recursive:
                    stack.append(e)
            else:
                files.append(rel)
    return sorted(files), dirs


def _zip_listing(zf: zipfile.ZipFile) -> tuple[list[str], set[str]]:
    files: list[str] = []
    dirs: set[str] = set()
    for info in zf.infolist():
        parts = PurePosixPath(info.filename).parts
        if any(_hidden(part) for part in parts):
            continue
        # Zips need not store directory entries; derive them from member names.
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        if info.is_dir():
            dirs.add("/".join(parts))
        else:
            files.append("/".join(parts))
    return sorted(files), dirs


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _children(prefix: str, files: Iterable[str], dirs: Iterable[str]) -> tuple[set[str], set[str]]:
    def direct(paths: Iterable[str]) -> set[str]:
        out = set()
        for p in paths:
            rel = p[len(prefix) + 1 :] if prefix else p
            if (not prefix or p.startswith(prefix + "/")) and "/" not in rel:
                out.add(rel)
        return out

    return direct(files), direct(dirs)


def _find_root(files: list[str], dirs: set[str]) -> _Root:
    """Where the data starts: the top, or inside a single wrapper folder (as in zips)."""
    prefix = ""
    for _ in range(8):  # wrapper folders nest a few levels at most
        top_files, top_dirs = _children(prefix, files, dirs)
        if "X.npy" in top_files and "Y.npy" in top_files:
            return _Root(prefix, npy=True)
        if top_files & {"X.npy", "Y.npy"}:
            have, miss = ("X.npy", "Y.npy") if "X.npy" in top_files else ("Y.npy", "X.npy")
            where = prefix or "the input"
            raise InputError(f"found {have} but no {miss} in {where}; an npy load needs both")
        if not top_files and len(top_dirs) == 1:
            (only,) = top_dirs
            inner = _join(prefix, only)
            inner_files, inner_dirs = _children(inner, files, dirs)
            # Descend into a wrapper (Dataset/0/...), but not into a lone label
            # folder, whose name must then be judged as a label.
            if inner_dirs or {"X.npy", "Y.npy"} <= inner_files:
                prefix = inner
                continue
        if not top_dirs:
            raise InputError(f"nothing to load in {prefix or 'the input'}: {_LAYOUTS}")
        return _Root(prefix, npy=False)
    raise InputError(f"nothing to load: folders nest too deeply; {_LAYOUTS}")


def _tree_tasks(
    files: list[str],
    dirs: set[str],
    prefix: str,
    local: Callable[[str], str],
    display: Callable[[str], str],
) -> Iterator[_Task]:
    """One task per file under ``prefix`` (plus one per empty label folder), sorted."""
    top_files, top_dirs = _children(prefix, files, dirs)
    by_folder: dict[str, list[str]] = {d: [] for d in top_dirs}
    strays = []
    for f in files:
        if prefix and not f.startswith(prefix + "/"):
            continue
        rel = f[len(prefix) + 1 :] if prefix else f
        head, sep, _ = rel.partition("/")
        if sep:
            by_folder[head].append(f)
        else:
            strays.append(f)
    items: list[tuple[str, str | None]] = [(f, None) for f in strays]
    items += [(_join(prefix, d), d) for d in top_dirs]
    for key, folder in sorted(items):
        if folder is None:
            yield Rejection(
                display(key),
                "stray file at the top level; put each image in a folder named by its "
                "label, e.g. 3/image.jpg",
            )
            continue
        members = by_folder[folder]
        if not members:
            yield Rejection(
                display(key) + "/",
                "label folder is empty; add its images or remove the folder",
            )
            continue
        label = parse_label(folder)
        for f in members:  # already sorted
            if label is None:
                yield Rejection(
                    display(f),
                    f"folder name {folder!r} is not a valid label; label folders must be "
                    f"named by an integer from 0 to {MAX_LABEL}, such as 0, 1 or 9",
                )
            elif PurePosixPath(f).suffix.lower() not in IMAGE_EXTENSIONS:
                yield Rejection(
                    display(f),
                    f"not a JPEG or PNG (extension {PurePosixPath(f).suffix or 'missing'!r}); "
                    "only .jpg, .jpeg and .png files are loaded",
                )
            else:
                yield _Decode(local(f), display(f), label)


# --- npy pairs -----------------------------------------------------------------


def _check_arrays(src: _Input) -> None:
    assert src.x is not None and src.y is not None
    xname = src.display(_join(src.root.prefix, "X.npy"))
    yname = src.display(_join(src.root.prefix, "Y.npy"))
    x = load_npy(src.x, xname, mmap=True)
    y = load_npy(src.y, yname, mmap=True)
    if x.dtype.kind not in "uif":
        raise ArrayError(f"{xname} has dtype {x.dtype} (shape {x.shape}); use uint8 or float")
    if y.dtype.kind not in "uifb":
        raise ArrayError(f"{yname} has dtype {y.dtype} (shape {y.shape}); use integer labels")
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 2, 3, 4)):
        raise ArrayError(
            f"{xname} has shape {x.shape}; expected (n, h, w) or (n, h, w, c) with c in 1..4"
        )
    if y.ndim not in (1, 2):
        raise ArrayError(
            f"{yname} has shape {y.shape}; expected (n,) class indices or (n, k) one-hot rows"
        )
    if x.shape[0] != y.shape[0]:
        raise ArrayError(
            f"{xname} has shape {x.shape} but {yname} has shape {y.shape}: {x.shape[0]} images "
            f"and {y.shape[0]} labels; they must have one label per image, in the same order"
        )
    if x.shape[0] == 0:
        raise ArrayError(f"{xname} has shape {x.shape}: no images to load")


def _npy_items(src: _Input, prep: Preprocessing) -> Iterator[Sample | Rejection]:
    assert src.x is not None and src.y is not None
    xname = src.display(_join(src.root.prefix, "X.npy"))
    x = load_npy(src.x, xname, mmap=True)  # mmap: one row in memory at a time
    y = load_npy(src.y, src.display(_join(src.root.prefix, "Y.npy")), mmap=False)
    for i in range(x.shape[0]):
        source = f"{xname}[{i}]"
        label = label_of_row(y[i])
        if isinstance(label, str):
            yield Rejection(source, label)
            continue
        try:
            pixels = preprocess_array(np.asarray(x[i]), source, prep)
        except ArrayError as e:
            yield Rejection(source, str(e).removeprefix(f"{source}: "))
            continue
        yield Sample(source, label, pixels, pixels_sha256(pixels))


# --- decoding ------------------------------------------------------------------


def _run_task(task: _Task, prep: Preprocessing) -> Sample | Rejection:
    if isinstance(task, Rejection):
        return task
    try:
        pixels = load_image_file(task.path, prep)
    except ImageError as e:
        return Rejection(task.source, e.reason)
    except NotFound:
        return Rejection(task.source, "file disappeared while loading; re-run the load")
    return Sample(task.source, task.label, pixels, pixels_sha256(pixels))


def _run_chunk(tasks: list[_Task], prep: Preprocessing) -> list[Sample | Rejection]:
    # Runs in a worker: it reads the bytes itself so only paths and the small
    # decoded arrays cross the process boundary.
    return [_run_task(t, prep) for t in tasks]


def _chunks(tasks: Iterator[_Task], n: int) -> Iterator[list[_Task]]:
    while chunk := list(islice(tasks, n)):
        yield chunk


def _decode_stream(
    tasks: Iterator[_Task], prep: Preprocessing, workers: int
) -> Iterator[Sample | Rejection]:
    if workers == 1:
        for chunk in _chunks(tasks, CHUNK_SIZE):
            yield from _run_chunk(chunk, prep)
        return
    ctx = multiprocessing.get_context(_START_METHOD)
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


def _stream(
    src: _Input, prep: Preprocessing, workers: int, progress: Progress | None
) -> Iterator[Sample | Rejection]:
    if len(src.files) <= CHUNK_SIZE:
        workers = 1  # starting a pool costs more than decoding a handful of files
    try:
        items = (
            _npy_items(src, prep)
            if src.x is not None
            else _decode_stream(src.tasks(), prep, workers)
        )
        for item in items:
            if progress is not None:
                progress(1)
            yield item
    finally:
        src.close()
