"""What every input format yields: a decoded :class:`Sample` or a :class:`Rejection`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    source: str  # a path, "archive.zip:dir/a.jpg" or "X.npy[17]": what a person can find
    class_key: str  # the class as the input names it: a folder name, a label cell, "3"
    pixels: np.ndarray  # uint8 (h, w, c), C-contiguous
    sha256: str  # of the pixel bytes: the image's identity within its dataset
    split: str | None = None  # the split the input fixed (train/ and test/ folders), if any


@dataclass(frozen=True)
class Rejection:
    source: str
    reason: str  # says what is wrong and how to fix it
