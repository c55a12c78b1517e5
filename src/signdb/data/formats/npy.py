"""An ``X.npy`` / ``Y.npy`` pair: read without unpickling, checked as a whole before any row.

X is ``(n, h, w)`` or ``(n, h, w, c)``, uint8 or float in [0, 1]; Y is ``(n,)``
class indices or ``(n, k)`` one-hot rows. A bad row (a pixel out of range, a
label that is not a class index) becomes a :class:`Rejection` naming ``X.npy[i]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from signdb.data.formats import Format
from signdb.data.labels import label_of_row
from signdb.data.preprocess import Preprocessing, pixels_sha256, preprocess_array
from signdb.data.samples import Rejection, Sample
from signdb.errors import ArrayError, InputError

PAIR = ("X.npy", "Y.npy")


class NpyPair(Format):
    name = "npy"

    @classmethod
    def claims(cls, path: Path) -> bool:
        if path.is_file() and path.name in PAIR:
            return True
        if not path.is_dir():
            return False
        present = [n for n in PAIR if (path / n).is_file()]
        if len(present) == 1:
            have, miss = (present[0], PAIR[1 - PAIR.index(present[0])])
            raise InputError(f"found {have} but no {miss} in {path}; an npy load needs both")
        return len(present) == 2

    def __init__(self, root: Path, where) -> None:  # noqa: ANN001 - Location
        folder = root.parent if root.is_file() else root
        super().__init__(folder, where)
        self.x_path, self.y_path = folder / "X.npy", folder / "Y.npy"
        if root.is_file() and not (self.x_path.is_file() and self.y_path.is_file()):
            partner = "Y.npy" if root.name == "X.npy" else "X.npy"
            raise InputError(
                f"{root} needs its partner {partner} in the same folder; put both there"
            )
        self.x_name = where.show(self.x_path)
        self.y_name = where.show(self.y_path)

    def check(self) -> None:
        x = _load(self.x_path, self.x_name, mmap=True)
        y = _load(self.y_path, self.y_name, mmap=True)
        xname, yname = self.x_name, self.y_name
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
                f"{xname} has shape {x.shape} but {yname} has shape {y.shape}: {x.shape[0]} "
                f"images and {y.shape[0]} labels; they must have one label per image, in the "
                "same order"
            )
        if x.shape[0] == 0:
            raise ArrayError(f"{xname} has shape {x.shape}: no images to load")

    def count(self) -> int:
        return int(_load(self.x_path, self.x_name, mmap=True).shape[0])

    def class_keys(self) -> set[str]:
        y = _load(self.y_path, self.y_name, mmap=False)
        labels = (label_of_row(row) for row in y)
        return {str(v) for v in labels if isinstance(v, int)}

    def samples(self, prep: Preprocessing, workers: int) -> Iterator[Sample | Rejection]:
        x = _load(self.x_path, self.x_name, mmap=True)  # mmap: one row in memory at a time
        y = _load(self.y_path, self.y_name, mmap=False)
        for i in range(x.shape[0]):
            source = f"{self.x_name}[{i}]"
            label = label_of_row(y[i])
            if isinstance(label, str):
                yield Rejection(source, label)
                continue
            try:
                pixels = preprocess_array(np.asarray(x[i]), source, prep)
            except ArrayError as e:
                yield Rejection(source, str(e).removeprefix(f"{source}: "))
                continue
            yield Sample(source, str(label), pixels, pixels_sha256(pixels))


def _load(path: Path, display: str, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        # Object arrays land here: loading them would mean unpickling data.
        raise ArrayError(
            f"{display} cannot be read as a numeric array ({e}); save it with a numeric "
            "dtype (uint8 or float) and without pickled objects"
        ) from None
    except OSError as e:
        raise ArrayError(f"{display} is not a valid .npy file ({e}); re-create it") from None
