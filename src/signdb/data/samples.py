"""What every input format yields: a decoded :class:`Sample` or a :class:`Rejection`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    source: str  # a path, "archive.zip:dir/a.jpg" or "X.npy[17]": what a person can find
    label: int
    pixels: np.ndarray  # uint8 (h, w, c), C-contiguous
    sha256: str  # of the pixel bytes: the image's identity within its dataset


@dataclass(frozen=True)
class Rejection:
    source: str
    reason: str  # says what is wrong and how to fix it
