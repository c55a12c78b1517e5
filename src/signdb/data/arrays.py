"""X.npy / Y.npy pairs: read without unpickling, checked as a whole before any row."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np

from signdb.errors import ArrayError


def load_npy(path: Path, display: str, mmap: bool) -> np.ndarray:
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


def npy_rows(f: IO[bytes], display: Path) -> int:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read_header(f)
    except ValueError as e:
        raise ArrayError(f"{display}: X.npy is not a valid .npy file ({e})") from None
    return int(shape[0]) if shape else 0
