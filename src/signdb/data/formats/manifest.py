"""A CSV manifest: one row per image, naming its file, its class and optionally its split.

The layout is a ``labels.csv`` next to the images it names (or any ``.csv``
file given directly)::

    ROOT/labels.csv         path,label,split
    ROOT/images/a.png       images/a.png,cat,train
    ROOT/images/b.jpg       images/b.jpg,dog,test

The rules:

* The first row is the header. Column names are matched ignoring case and
  surrounding spaces. The path column is the leftmost one named ``path``,
  ``file``, ``filename`` or ``image``; the class column is ``label``; a
  ``split`` column is optional. Other columns are ignored.
* Paths are relative to the CSV's folder; ``/`` and ``\\`` both separate
  folders. Absolute paths, and paths whose ``..`` lead out of the folder, are
  refused: a manifest that came inside a download must not make signdb read
  arbitrary files (``/etc/...``, ``~/.ssh/...``) into the database.
* A label is a class name or a non-negative integer (see
  :mod:`signdb.data.labels`), stripped of surrounding spaces.
* A split is ``train``, ``val`` or ``test`` (``valid`` and ``validation``
  mean ``val``), in any case; an empty cell means no split.
* Rows are numbered as a spreadsheet numbers them: the header is row 1, the
  first data row is row 2. Blank rows are skipped but keep their numbers.
* The file is UTF-8, with or without the BOM Excel writes, and comma-separated.

Problems with the CSV as a whole (no path or label column, no rows, not UTF-8)
raise :class:`~signdb.errors.InputError` when it is opened. A bad row (empty
label, unknown split, missing file, refused path) becomes a
:class:`~signdb.data.samples.Rejection` named ``labels.csv:<row>``; a file that
does not decode is named by the file itself, as in a folder tree. A file on
several rows is loaded once per row; identical pixels are deduplicated later.
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from signdb.data.decoding import DecodeTask, Task, decode_stream
from signdb.data.formats import Format, Location
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample
from signdb.data.splits import SPLIT_ALIASES
from signdb.errors import InputError

MANIFEST_NAME = "labels.csv"
#: Accepted names of the path column; the leftmost column with one of them wins.
PATH_COLUMNS = ("path", "file", "filename", "image")
LABEL_COLUMN = "label"
SPLIT_COLUMN = "split"
_DRIVE = re.compile(r"^[A-Za-z]:")


def parse_split(cell: str | None) -> str | None:
    """The split a cell names (None when empty); ValueError says how to fix a bad one."""
    if cell is None or not cell.strip():
        return None
    split = SPLIT_ALIASES.get(cell.strip().lower())
    if split is None:
        raise ValueError(
            f"split {cell.strip()!r} is not train, val or test (valid and validation also "
            "mean val); fix the cell or leave it empty for no split"
        )
    return split


@dataclass(frozen=True)
class _Columns:
    path: int
    label: int
    split: int | None
    width: int


class CsvManifest(Format):
    name = "csv"

    @classmethod
    def claims(cls, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() == ".csv"
        return path.is_dir() and (path / MANIFEST_NAME).is_file()

    def __init__(self, root: Path, where: Location) -> None:
        csv_path = root if root.is_file() else root / MANIFEST_NAME
        super().__init__(csv_path.parent, where)  # paths are relative to the CSV's folder
        self.csv_path = csv_path
        self.csv_name = where.show(csv_path)
        self._scan: tuple[int, set[str]] | None = None

    def check(self) -> None:
        self._scanned()

    def count(self) -> int:
        return self._scanned()[0]

    def class_keys(self) -> set[str]:
        return set(self._scanned()[1])

    def samples(self, prep: Preprocessing, workers: int) -> Iterator[Sample | Rejection]:
        return decode_stream(self._tasks(), prep, workers)

    def _scanned(self) -> tuple[int, set[str]]:
        """(items, class keys) from one full pass over the CSV.

        The pass runs at open: an encoding error on the last line must stop the
        load before its first row is stored, and the count comes out of it free.
        """
        if self._scan is None:
            n, keys = 0, set()
            for task in self._tasks():
                n += 1
                if isinstance(task, DecodeTask):
                    keys.add(task.class_key)
            if n == 0:
                raise InputError(
                    f"{self.csv_name} has a header but no rows; add one row per image (path,label)"
                )
            self._scan = (n, keys)
        return self._scan

    def _tasks(self) -> Iterator[Task]:
        """One task (or Rejection) per non-blank data row, in file order."""
        records = self._records()
        first = next(records, None)
        if first is None:
            raise InputError(
                f"{self.csv_name} is empty; write a header row (e.g. path,label,split) "
                "and one row per image"
            )
        cols = self._columns(first[1])
        for number, row in records:
            if any(cell.strip() for cell in row):
                yield self._task(number, row, cols)

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, cells) for every record, the header first."""
        try:
            # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which would
            # otherwise stick to the first column's name.
            f = open(self.csv_path, encoding="utf-8-sig", newline="")
        except OSError as e:
            raise InputError(
                f"cannot read {self.csv_name} ({e.strerror}); check its permissions"
            ) from None
        with f:
            reader = csv.reader(f)
            number = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError as e:
                    raise InputError(self._not_utf8(e)) from None
                except csv.Error as e:
                    raise InputError(
                        f"{self.csv_name}, row {number + 1}: not readable as CSV ({e}); "
                        "save it again as a comma-separated text file"
                    ) from None
                number += 1
                yield number, row

    def _not_utf8(self, e: UnicodeDecodeError) -> str:
        with open(self.csv_path, "rb") as f:
            head = f.read(2)
        found = "UTF-16 text" if head in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8 text"
        bad = e.object[e.start : e.start + 1]
        return (
            f"{self.csv_name} is {found} (byte {bad!r}: {e.reason}); save it as UTF-8 "
            "(in Excel: 'CSV UTF-8 (Comma delimited)')"
        )

    def _columns(self, header: list[str]) -> _Columns:
        names = [c.strip().lower() for c in header]
        found = ", ".join(repr(c) for c in header) or "none"
        hint = ""
        if len(header) == 1 and re.search(r"[;\t|]", header[0]):
            hint = "; the header looks separated by ';', tab or '|', but signdb reads commas"
        path = next((i for i, n in enumerate(names) if n in PATH_COLUMNS), None)
        if path is None:
            raise InputError(
                f"{self.csv_name} has no path column (columns found: {found}); name the "
                f"column of image paths one of {', '.join(PATH_COLUMNS)}{hint}"
            )
        if LABEL_COLUMN not in names:
            raise InputError(
                f"{self.csv_name} has no label column (columns found: {found}); name the "
                f"column of class names or integer labels {LABEL_COLUMN!r}{hint}"
            )
        split = names.index(SPLIT_COLUMN) if SPLIT_COLUMN in names else None
        return _Columns(path, names.index(LABEL_COLUMN), split, len(header))

    def _task(self, number: int, row: list[str], cols: _Columns) -> Task:
        source = f"{self.csv_name}:{number}"
        if len(row) > cols.width:
            return Rejection(
                source,
                f"row has {len(row)} cells but the header has {cols.width} columns; quote "
                'cells that contain commas, e.g. "a, b.png"',
            )
        # Short rows (trailing cells dropped by some tools) read as empty cells.
        cells = row + [""] * (cols.width - len(row))
        raw, label = cells[cols.path].strip(), cells[cols.label].strip()
        if not raw:
            return Rejection(source, "the path cell is empty; write the image's file path")
        if not label:
            return Rejection(
                source, f"the label of {raw!r} is empty; write its class name or integer label"
            )
        try:
            split = parse_split(cells[cols.split]) if cols.split is not None else None
        except ValueError as e:
            return Rejection(source, str(e))
        target = self._file(raw)
        if isinstance(target, str):
            return Rejection(source, target)
        return DecodeTask(self.where.show(target), label, path=str(target), split=split)

    def _file(self, raw: str) -> Path | str:
        """The file a path cell names, or why it is refused."""
        rel = raw.replace("\\", "/")
        folder = self.where.show(self.root)
        if rel.startswith("/") or _DRIVE.match(rel):
            return (
                f"path {raw!r} is absolute; write paths relative to the CSV's folder "
                f"({folder}), e.g. images/a.png"
            )
        # Lexical, not resolve(): a symlink the user made is theirs to follow,
        # but '..' in a manifest from elsewhere must not reach outside.
        norm = posixpath.normpath(rel)
        if norm == ".." or norm.startswith("../"):
            return (
                f"path {raw!r} leads outside the CSV's folder ({folder}); move the image "
                "under that folder and write the path relative to it"
            )
        target = self.root / norm
        if target.is_file():
            return target
        if target.is_dir():
            return f"path {raw!r} is a folder, not an image file; name one file per row"
        return (
            f"file not found: {raw!r} (looked for {self.where.show(target)}); fix the path "
            "in the CSV or add the file"
        )
