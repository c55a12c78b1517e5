"""Input formats behind one protocol, and the one place that decides which applies.

A load's PATH is a folder, a file, or an archive of either. :func:`open_input`
unpacks archives (``formats.archive``), steps into wrapper folders (``Dataset/``
inside a download), and asks each :class:`Format` in :data:`FORMATS`, in order,
whether the folder or file is its kind. The first that says yes reads it:

* ``npy``: an ``X.npy`` / ``Y.npy`` pair (:mod:`signdb.data.formats.npy`);
* ``csv``: a ``labels.csv`` (or any ``.csv``) naming each image's file, class
  and split (:mod:`signdb.data.formats.manifest`);
* ``parquet``: Parquet files with ``image`` and ``label`` columns, in the
  Hugging Face Hub's layout (:mod:`signdb.data.formats.parquet`);
* ``folder``: one subfolder per class (:mod:`signdb.data.formats.folder`).

Archives are ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` and ``.tar.xz``.

Adding a format is adding a module with a :class:`Format` subclass and listing
it in :data:`FORMATS`; nothing else changes. Every format counts its items
cheaply and yields :class:`~signdb.data.samples.Sample` or
:class:`~signdb.data.samples.Rejection` items in a deterministic order.
Problems with the input as a whole raise when it is opened, before any item.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from signdb.data.decoding import CHUNK_SIZE
from signdb.data.formats import archive
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample
from signdb.errors import InputError, InvalidArgument, NotFound

Progress = Callable[[int], None]

LAYOUTS = (
    "expected a folder with one subfolder per class (e.g. cat/a.jpg, dog/b.png; optionally "
    "under train/ and test/), an X.npy + Y.npy pair, a CSV manifest (labels.csv with path "
    "and label columns), Parquet files with image and label columns (as Hugging Face "
    "datasets writes them), or a .zip or .tar.gz of any of these"
)
#: Wrapper folders (download/Dataset/...) nest a few levels at most.
_MAX_WRAPPERS = 8


@dataclass(frozen=True)
class Location:
    """Where an input's files are on disk, and how to name them to a person.

    Inside an archive, files are named ``archive.zip:member/path`` rather than
    by the temporary folder they were unpacked into.
    """

    base: Path
    archive: Path | None = None

    def show(self, path: Path | str) -> str:
        if self.archive is None:
            return str(path)
        rel = Path(path).relative_to(self.base).as_posix()
        return f"{self.archive}:{rel}" if rel != "." else str(self.archive)


def is_hidden(name: str) -> bool:
    """OS metadata (.DS_Store, macOS zips' __MACOSX/), never data."""
    return name.startswith(".") or name == "__MACOSX"


def visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not is_hidden(p.name))


class Format(ABC):
    """One kind of input. Subclasses say whether a path is theirs, count and read it."""

    name: ClassVar[str]

    def __init__(self, root: Path, where: Location) -> None:
        self.root = root
        self.where = where

    @classmethod
    @abstractmethod
    def claims(cls, path: Path) -> bool:
        """True when ``path`` (a folder or a file) is an input of this format."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise for problems with the input as a whole; called once when opened."""

    @abstractmethod
    def count(self) -> int:
        """How many items :meth:`samples` yields; cheap (lists files, reads headers)."""

    @abstractmethod
    def class_keys(self) -> set[str]:
        """Every class the input names (folder names, label values), before any decoding."""

    def index_names(self) -> list[str] | None:
        """Names the input itself gives integer labels (a ClassLabel feature), if any."""
        return None

    def warnings(self) -> list[str]:
        """Things about the input a person should know that do not stop the load."""
        return []

    @abstractmethod
    def samples(self, prep: Preprocessing, workers: int) -> Iterator[Sample | Rejection]:
        """Every item, decoded with ``prep``, in a deterministic order."""


def _formats() -> tuple[type[Format], ...]:
    from signdb.data.formats.folder import FolderTree
    from signdb.data.formats.manifest import CsvManifest
    from signdb.data.formats.npy import NpyPair
    from signdb.data.formats.parquet import ParquetImages

    # Order matters: a folder tree claims any folder with subfolders, so a
    # labels.csv next to images/ or a data/ of Parquet files must be seen first.
    return (NpyPair, CsvManifest, ParquetImages, FolderTree)


@dataclass
class Input:
    """An opened input: its format, and the temporary folder to clean up."""

    format: Format
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _count: int | None = None

    def count(self) -> int:
        if self._count is None:
            self._count = self.format.count()
        return self._count

    def class_keys(self) -> set[str]:
        return self.format.class_keys()

    def index_names(self) -> list[str] | None:
        return self.format.index_names()

    def warnings(self) -> list[str]:
        return self.format.warnings()

    def samples(
        self, prep: Preprocessing, *, workers: int = 2, progress: Progress | None = None
    ) -> Iterator[Sample | Rejection]:
        check_workers(workers)
        # Starting a pool costs more than decoding a handful of files.
        for item in self.format.samples(prep, workers if self.count() > CHUNK_SIZE else 1):
            if progress is not None:
                progress(1)
            yield item

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"workers must be a positive integer, got {workers!r}; pass e.g. 2")
    return workers


def resolve(path: Path) -> Input:
    """Open ``path``: unpack an archive, step into wrappers, pick the format, check it."""
    if not path.exists():
        raise NotFound(
            f"no such file or folder: {path}; check the path, or download the reference "
            "dataset with `signdb datasets fetch`"
        )
    tmp = None
    where = Location(path.parent if path.is_file() else path)
    root = path
    if archive.is_archive(path):
        # TemporaryDirectory also cleans up when garbage collected, so an
        # abandoned, never-started iterator does not leak the extracted files.
        tmp = tempfile.TemporaryDirectory(prefix="signdb-archive-")
        where = Location(Path(tmp.name), archive=path)
        root = where.base
    try:
        if tmp is not None:
            archive.safe_extract(path, root)
        fmt = _pick(root, where)
        fmt.check()
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return Input(fmt, tmp)


def _pick(root: Path, where: Location) -> Format:
    formats = _formats()
    for _ in range(_MAX_WRAPPERS):
        for cls in formats:
            if cls.claims(root) and not (cls.name == "folder" and _is_wrapper(root, formats)):
                return cls(root, where)
        if root.is_dir() and _is_wrapper(root, formats):
            (root,) = visible(root)
            continue
        if root.is_file():
            raise InputError(f"cannot load {where.show(root)}: {LAYOUTS}")
        raise InputError(f"nothing to load in {_name(root, where)}: {LAYOUTS}")
    raise InputError(f"nothing to load: folders nest too deeply; {LAYOUTS}")


def _name(root: Path, where: Location) -> str:
    shown = where.show(root)
    return "the input" if where.archive is not None and root == where.base else shown


def _is_wrapper(folder: Path, formats: tuple[type[Format], ...]) -> bool:
    """A folder holding nothing but one folder, which is itself an input (not a lone class)."""
    from signdb.data.formats.folder import split_folders

    if split_folders(folder) is not None:  # train/ alone is a split, not a wrapper
        return False
    children = visible(folder)
    if len(children) != 1 or not children[0].is_dir():
        return False
    inner = children[0]
    return any(p.is_dir() for p in visible(inner)) or any(
        cls.claims(inner) for cls in formats if cls.name != "folder"
    )


@contextmanager
def open_input(path: str | Path) -> Iterator[Input]:
    """``with open_input(path) as src: src.count(); src.samples(prep)``; cleans up after."""
    src = resolve(Path(path))
    try:
        yield src
    finally:
        src.close()


def iter_samples(
    path: str | Path,
    prep: Preprocessing,
    *,
    workers: int = 2,
    progress: Progress | None = None,
) -> Iterator[Sample | Rejection]:
    """Stream every input of ``path`` as a Sample or a Rejection, in a deterministic order.

    Whole-input problems (missing path, nothing loadable, unusable X/Y arrays,
    unsafe archive) raise at call time, before anything is yielded. ``progress``
    is called with 1 for every item yielded, so ``count_inputs(path)`` is its
    total. ``workers=1`` decodes in this process.
    """
    check_workers(workers)
    src = resolve(Path(path))
    return _stream(src, prep, workers, progress)


def _stream(
    src: Input, prep: Preprocessing, workers: int, progress: Progress | None
) -> Iterator[Sample | Rejection]:
    try:
        yield from src.samples(prep, workers=workers, progress=progress)
    finally:
        src.close()


def count_inputs(path: str | Path) -> int:
    """How many items :func:`iter_samples` will yield for ``path``."""
    with open_input(path) as src:
        return src.count()


__all__ = [
    "LAYOUTS",
    "Format",
    "Input",
    "Location",
    "count_inputs",
    "iter_samples",
    "open_input",
]
