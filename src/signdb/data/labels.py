"""Class names and labels: how the names an input uses become a dataset's integer labels.

A label is a class index stored as a PostgreSQL integer; every class also has
a name (``signdb.classes``). The rules, as torchvision's ``ImageFolder`` and
Keras' ``image_dataset_from_directory`` users expect them:

* When every class name is a plain non-negative integer (``0``, ``7``), the
  label is that integer, so Sign Language Digits keeps its digits.
* Otherwise a new dataset's classes get labels 0..k-1 in sorted name order.
* A later load that brings a new name appends the next free label; existing
  labels never change.
* Integer labels can be given names (``--class-names FILE``, one name per line,
  line i naming label i, or a Parquet file's ``ClassLabel`` feature).
* Names that differ only in case are refused: they are a typo in waiting.

Examples
--------
>>> resolve_classes({"zero", "one", "two"}, existing={}).labels
{'one': 0, 'two': 1, 'zero': 2}
>>> resolve_classes({"3", "1"}, existing={}).labels
{'1': 1, '3': 3}
>>> resolve_classes({"dog", "cat", "emu"}, existing={"cat": 0, "dog": 1}).new
{2: 'emu'}
>>> resolve_classes({"0", "1"}, existing={}, index_names=["no", "yes"]).names
{0: 'no', 1: 'yes'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signdb.errors import InputError, LabelError

# Labels are stored as PostgreSQL integer.
MAX_LABEL = 2**31 - 1
MAX_NAME = 200


def parse_label(name: str) -> int | None:
    """The integer a class name spells plainly, else None."""
    # Plain decimal only: "07" and "+7" would be ambiguous aliases of "7".
    if name.isascii() and name.isdigit() and (name == "0" or not name.startswith("0")):
        value = int(name)
        return value if value <= MAX_LABEL else None
    return None


def check_class_name(name: str, where: str) -> str:
    if not name or not name.strip():
        raise LabelError(f"{where}: the class name is empty; name every class")
    if "\x00" in name or len(name) > MAX_NAME:
        raise LabelError(
            f"{where}: class name {name[:40]!r} is not usable (NUL byte or over {MAX_NAME} "
            "characters); rename it"
        )
    return name


def label_of_row(row: np.ndarray) -> int | str:
    """The class index in one Y row, or why there is none."""
    if row.ndim == 1 and row.shape[0] > 1:
        values = row.astype(np.float64)
        if np.all((values == 0) | (values == 1)) and values.sum() == 1:
            return int(np.argmax(values))
        shown = np.array2string(row, threshold=12, max_line_width=200)
        return (
            f"label row {shown} is not one-hot; each row of a 2-D Y.npy needs exactly "
            "one 1 and 0 elsewhere"
        )
    v = row.reshape(-1)[0].item()
    if isinstance(v, float) and (not np.isfinite(v) or v != int(v)):
        return f"label {v!r} is not a whole number; Y.npy must hold class indices 0, 1, 2, …"
    if int(v) < 0:
        return f"label {int(v)} is negative; Y.npy must hold class indices 0, 1, 2, …"
    if int(v) > MAX_LABEL:
        return f"label {int(v)} is larger than {MAX_LABEL}, the largest label signdb stores"
    return int(v)


def read_class_names(path: str | Path) -> list[str]:
    """``--class-names FILE``: one name per line, line i naming label i."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(
            f"--class-names {p}: no such file; give a file with one name per line"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--class-names {p} cannot be read as UTF-8 text ({e})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for i, name in enumerate(names):
        check_class_name(name, f"--class-names {p}, line {i + 1}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise LabelError(
                f"--class-names {p}: {name!r} is on lines {seen[name] + 1} and {i + 1}; "
                "every class needs its own name"
            )
        seen[name] = i
    if not names:
        raise LabelError(f"--class-names {p} is empty; write one class name per line")
    return names


@dataclass(frozen=True)
class ClassMap:
    """How one load's class keys map onto the dataset's classes."""

    labels: dict[str, int]  # class key as the input names it -> label
    names: dict[int, str]  # label -> name, for every class this input brings
    new: dict[int, str]  # the classes this load adds (label -> name)


def resolve_classes(
    keys: Iterable[str],
    *,
    existing: Mapping[str, int],
    index_names: Sequence[str] | None = None,
    origin: str = "the input",
) -> ClassMap:
    """Labels for an input's class ``keys`` given the dataset's ``existing`` name -> label.

    ``index_names`` names integer keys (``--class-names`` or a ClassLabel feature):
    key ``"i"`` is label i, named ``index_names[i]``.
    """
    keys = sorted(set(keys))
    plain = {k: parse_label(k) for k in keys}
    if index_names is not None:
        named = [k for k, v in plain.items() if v is None]
        if named:
            raise LabelError(
                f"--class-names names integer labels, but {origin} already names its "
                f"classes (e.g. {named[0]!r}); drop --class-names"
            )
        given = {}
        for key, label in plain.items():
            if label >= len(index_names):
                raise LabelError(
                    f"{origin} has label {label} but the class names cover labels 0 to "
                    f"{len(index_names) - 1} only; add a name for every label"
                )
            given[key] = (label, index_names[label])
    elif all(v is not None for v in plain.values()):
        given = {k: (v, k) for k, v in plain.items()}
    else:
        given = {}
    if given:
        out = _check_given(given, existing, origin)
    else:
        out = _append_names(keys, existing)
    _refuse_case_clashes([*existing, *out.names.values()], origin)
    return out


def _check_given(
    given: dict[str, tuple[int, str]], existing: Mapping[str, int], origin: str
) -> ClassMap:
    by_label = {label: name for name, label in existing.items()}
    for label, name in given.values():
        if name in existing and existing[name] != label:
            raise LabelError(
                f"{origin} gives class {name!r} label {label}, but the dataset has it as "
                f"label {existing[name]}; load with the dataset's labels"
            )
        if label in by_label and by_label[label] != name:
            raise LabelError(
                f"{origin} would rename class {label} from {by_label[label]!r} to {name!r}; "
                "labels keep their names: pass --class-names with the dataset's names "
                "(`signdb datasets show` lists them), or load into another dataset"
            )
    names = {label: name for label, name in given.values()}
    return ClassMap(
        labels={k: label for k, (label, _) in given.items()},
        names=names,
        new={label: name for label, name in names.items() if label not in by_label},
    )


def _append_names(keys: list[str], existing: Mapping[str, int]) -> ClassMap:
    for key in keys:
        check_class_name(key, f"class {key!r}")
    next_label = max(existing.values(), default=-1) + 1
    labels, new = {}, {}
    for key in keys:  # sorted: a new dataset's labels follow name order
        if key in existing:
            labels[key] = existing[key]
        else:
            labels[key] = new_label = next_label
            new[new_label] = key
            next_label += 1
    return ClassMap(labels=labels, names={v: k for k, v in labels.items()}, new=new)


def _refuse_case_clashes(names: Iterable[str], origin: str) -> None:
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise LabelError(
                f"class names {other!r} and {name!r} (in {origin} or the dataset) differ only "
                "in case; rename one of them, or merge the two folders"
            )
