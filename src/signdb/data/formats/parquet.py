"""Parquet files in the Hugging Face layout: an ``image`` and a ``label`` column.

The layout is the Hub's, as ``datasets``' ``push_to_hub`` writes it::

    ROOT/data/train-00000-of-00002.parquet
    ROOT/data/train-00001-of-00002.parquet
    ROOT/data/test-00000-of-00001.parquet

or ``*.parquet`` files at ROOT's top, or one ``.parquet`` file given directly.
Files are read in sorted path order. The rules:

* ``image`` is a struct of ``bytes`` and ``path``, as ``datasets.Image()``
  stores it, or plain binary; either way it holds JPEG or PNG bytes. A struct
  with only a ``path`` is refused: the path is the producer's, not ours
  (``Dataset.to_parquet`` writes those for images given as file paths;
  ``push_to_hub`` embeds the bytes).
* ``label`` holds integers or strings. Integers are class indices; when the
  schema's ``huggingface`` metadata declares ``label`` a ``ClassLabel``, its
  names name them (:meth:`ParquetImages.index_names`). Strings are class
  names, stripped of surrounding spaces. Any other type is refused.
* A row's split is its ``split`` cell when the file has that column and the
  cell is not empty (train, val, test, valid, validation; as in a CSV
  manifest), else the file name's first word: ``train-…``, ``test-…``,
  ``validation-…``/``valid-…``/``val-…`` (val); other names carry no split.
* Rows are named ``file[i]``, ``i`` counted from 0 within the file, as
  ``datasets`` indexes them (``ds[i]``).

Problems with a file as a whole (unreadable, no ``image`` or ``label``
column, a column of the wrong type, different ClassLabel names in two files)
raise :class:`~signdb.errors.InputError` when the input is opened. A null
image or label, a negative or unnamed class index, an unknown split, or bytes
that do not decode become a :class:`~signdb.data.samples.Rejection`.
Files are read a record batch at a time, so memory stays flat however large.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from signdb.data.decoding import CHUNK_SIZE, DecodeTask, Task, decode_stream
from signdb.data.formats import Format, Location, is_hidden
from signdb.data.labels import MAX_LABEL
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection, Sample
from signdb.data.splits import SPLIT_ALIASES
from signdb.errors import InputError

SUFFIX = ".parquet"
#: Rows per record batch: a few decoding chunks, so batches of large images stay small.
BATCH_ROWS = 2 * CHUNK_SIZE
#: Read buffer per column: without one, pyarrow reads a whole column chunk
#: (up to a row group, ~100 MB in Hub files) into memory at once.
_BUFFER = 1 << 20
_FIRST_WORD = re.compile(r"^([a-z]+)(?:[-_.]|$)")


class _Bad(Exception):
    """One row cannot be used; the message says why and how to fix it."""


@dataclass(frozen=True)
class _File:
    path: Path
    name: str  # as shown to a person
    rows: int
    labels: str  # "int" or "str"
    names: list[str] | None  # the ClassLabel feature's names
    split_column: bool
    split: str | None  # from the file name


class ParquetImages(Format):
    name = "parquet"

    @classmethod
    def claims(cls, path: Path) -> bool:
        if path.is_file():
            return path.name.lower().endswith(SUFFIX)
        return path.is_dir() and bool(_parquet_files(path))

    def __init__(self, root: Path, where: Location) -> None:
        super().__init__(root, where)
        paths = [root] if root.is_file() else _parquet_files(root)
        self.files = [_inspect(p, where.show(p)) for p in paths]
        self._keys: set[str] | None = None

    def check(self) -> None:
        kinds = {f.labels for f in self.files}
        if len(kinds) > 1:
            raise InputError(
                f"{self._listing()}: some files have integer labels and some string labels; "
                "use one kind of label in every file"
            )
        named = [f for f in self.files if f.names is not None]
        for f in named[1:]:
            if f.names != named[0].names:
                raise InputError(
                    f"{f.name} names its ClassLabel classes {f.names} but {named[0].name} "
                    f"names them {named[0].names}; load files of one dataset together"
                )
        if self.count() == 0:
            raise InputError(f"{self._listing()} holds no rows; nothing to load")

    def count(self) -> int:
        return sum(f.rows for f in self.files)  # from the footers: no data is read

    def class_keys(self) -> set[str]:
        if self._keys is None:
            keys = set()
            for f in self.files:
                names = self._names(f)
                for batch in _batches(f, ["label"], batch_size=1 << 16):
                    for value in batch.column("label").to_pylist():
                        try:
                            keys.add(_class_key(value, names))
                        except _Bad:
                            continue  # rejected when its row is read
            self._keys = keys
        return set(self._keys)

    def index_names(self) -> list[str] | None:
        return next((f.names for f in self.files if f.names is not None), None)

    def samples(self, prep: Preprocessing, workers: int) -> Iterator[Sample | Rejection]:
        return decode_stream(self._tasks(), prep, workers)

    def _names(self, f: _File) -> list[str] | None:
        # Files of one input share their names (check()), even if one lacks the metadata.
        return f.names if f.names is not None else self.index_names()

    def _listing(self) -> str:
        return self.where.show(self.root)

    def _tasks(self) -> Iterator[Task]:
        for f in self.files:
            names = self._names(f)
            columns = ["image", "label", *(["split"] if f.split_column else [])]
            row = 0
            for batch in _batches(f, columns, batch_size=BATCH_ROWS):
                images = batch.column("image").to_pylist()
                labels = batch.column("label").to_pylist()
                splits = (
                    batch.column("split").to_pylist() if f.split_column else [None] * len(labels)
                )
                for image, label, split in zip(images, labels, splits, strict=True):
                    yield _task(f"{f.name}[{row}]", image, label, split, f.split, names)
                    row += 1


def _task(
    source: str,
    image: Any,
    label: Any,
    split: str | None,
    default_split: str | None,
    names: list[str] | None,
) -> Task:
    try:
        data = _image_bytes(image)
        key = _class_key(label, names)
        chosen = _split_cell(split)
    except _Bad as e:
        return Rejection(source, str(e))
    return DecodeTask(source, key, data=data, split=chosen or default_split)


def _image_bytes(value: Any) -> bytes:
    if isinstance(value, dict):  # datasets.Image(): {"bytes": ..., "path": ...}
        data, path = value.get("bytes"), value.get("path")
        if data is None and path:
            raise _Bad(
                f"the image has no bytes, only the path {path!r}, which signdb does not "
                "follow; write the file with the bytes embedded (push_to_hub does; for "
                "to_parquet, give images as PIL images or {'bytes': ..., 'path': ...})"
            )
        value = data
    if value is None:
        raise _Bad("the image is null; fill in the image bytes or remove the row")
    return value


def _class_key(value: Any, names: list[str] | None) -> str:
    if value is None:
        raise _Bad("the label is null; label the row or remove it")
    if isinstance(value, str):
        if not value.strip():
            raise _Bad("the label is empty; write the row's class name")
        return value.strip()
    if value < 0:
        raise _Bad(
            f"label {value} is negative (datasets writes -1 for 'no label', as in an "
            "unlabelled test split); give the row a class index 0, 1, 2, … or remove it"
        )
    if names is not None and value >= len(names):
        raise _Bad(
            f"label {value} is not a class of the file's ClassLabel feature, which names "
            f"{len(names)} classes (0 to {len(names) - 1}); fix the label or the feature"
        )
    if value > MAX_LABEL:
        raise _Bad(f"label {value} is larger than {MAX_LABEL}, the largest label signdb stores")
    return str(value)


def _split_cell(cell: str | None) -> str | None:
    if cell is None or not cell.strip():
        return None
    split = SPLIT_ALIASES.get(cell.strip().lower())
    if split is None:
        raise _Bad(
            f"split {cell.strip()!r} is not train, val or test (valid and validation also "
            "mean val); fix the cell or leave it empty to use the file name's split"
        )
    return split


def _parquet_files(folder: Path) -> list[Path]:
    """``*.parquet`` at the top of ``folder`` and in its ``data/`` (the Hub's layout)."""
    found = []
    for d in (folder, folder / "data"):
        if d.is_dir():
            found += [
                p
                for p in d.iterdir()
                if p.is_file() and p.name.lower().endswith(SUFFIX) and not is_hidden(p.name)
            ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _open(path: Path, shown: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, buffer_size=_BUFFER, pre_buffer=False)
    except (pa.ArrowException, OSError) as e:
        raise InputError(
            f"{shown} is not a readable Parquet file ({e}); re-create or re-download it"
        ) from None


def _batches(f: _File, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    pf = _open(f.path, f.name)
    try:
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)
    except (pa.ArrowException, OSError) as e:
        # The footer was fine at open; a corrupt page only shows when it is read.
        raise InputError(
            f"{f.name} is corrupt ({e}); re-create or re-download it, then load again"
        ) from None
    finally:
        pf.close()


def _inspect(path: Path, shown: str) -> _File:
    """Read one file's footer and check its columns; no row data is read."""
    pf = _open(path, shown)
    try:
        schema, rows = pf.schema_arrow, pf.metadata.num_rows
    finally:
        pf.close()
    fields = {field.name: field.type for field in schema}
    found = ", ".join(schema.names) or "none"
    if "image" not in fields:
        raise InputError(
            f"{shown} has no image column (columns: {found}); name the column of JPEG/PNG "
            "bytes 'image', as datasets.Image() does"
        )
    if not _is_image_type(fields["image"]):
        raise InputError(
            f"{shown}: the image column has type {fields['image']}; expected "
            "struct<bytes, path> (datasets.Image()) or binary JPEG/PNG bytes"
        )
    if "label" not in fields:
        raise InputError(
            f"{shown} has no label column (columns: {found}); name the column of class "
            "indices or class names 'label'"
        )
    label = _value_type(fields["label"])
    if pa.types.is_integer(label):
        labels, names = "int", _class_label_names(schema.metadata)
    elif _is_string(label):
        labels, names = "str", None
    else:
        raise InputError(
            f"{shown}: the label column has type {fields['label']}; use integers (class "
            "indices, e.g. a datasets.ClassLabel) or strings (class names)"
        )
    if "split" in fields and not _is_string(_value_type(fields["split"])):
        raise InputError(
            f"{shown}: the split column has type {fields['split']}; use strings "
            "(train, val, test) or drop the column"
        )
    return _File(path, shown, rows, labels, names, "split" in fields, _file_split(path.name))


def _file_split(filename: str) -> str | None:
    """train-00000-of-00001.parquet -> train; validation-… -> val; data.parquet -> None."""
    match = _FIRST_WORD.match(filename.lower())
    return SPLIT_ALIASES.get(match.group(1)) if match else None


def _class_label_names(metadata: dict[bytes, bytes] | None) -> list[str] | None:
    """The ClassLabel names ``datasets`` stores for ``label``, if it stored any.

    ``datasets`` writes the schema metadata key ``huggingface`` as JSON:
    ``{"info": {"features": {"label": {"names": [...], "_type": "ClassLabel"}, ...}}}``.
    Anything else there (no key, other JSON, another feature type) means no names.
    """
    raw = (metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        feature: Any = json.loads(raw)
    except ValueError:
        return None
    for key in ("info", "features", "label"):
        feature = feature.get(key) if isinstance(feature, dict) else None
    if not isinstance(feature, dict) or feature.get("_type") != "ClassLabel":
        return None
    names = feature.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def _value_type(t: pa.DataType) -> pa.DataType:
    # A dictionary-encoded (categorical) column reads as its values.
    return t.value_type if pa.types.is_dictionary(t) else t


# The view types arrived in pyarrow 16; signdb supports 15.
_is_string_view = getattr(pa.types, "is_string_view", lambda _: False)
_is_binary_view = getattr(pa.types, "is_binary_view", lambda _: False)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is_binary_view(t)


def _is_image_type(t: pa.DataType) -> bool:
    if _is_binary(t):
        return True
    if not pa.types.is_struct(t):
        return False
    by_name = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
    return "bytes" in by_name and _is_binary(by_name["bytes"])
