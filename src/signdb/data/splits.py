"""Deterministic train/test assignment derived from image identity.

An image's split depends only on ``(sha256 of its pixels, seed, test_fraction)``:
``u = first 52 bits of sha256(f"{seed}:{sha256_hex}") / 2**52`` and the image
is in the test set when ``u < test_fraction``. Adding images later never moves
an existing one, re-ordering a load changes nothing, and the same rule is
written in SQL (``signdb.split_of``) so analysts get identical answers.

Because ``u`` is uniform and independent of the label, every label receives
``test_fraction`` of its images in expectation: the split is stratified per
label in distribution. (Rank-based exact stratification would move existing
images whenever a label gains new ones.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from signdb.errors import InvalidArgument

_BITS = 52  # a double represents every 52-bit integer exactly, so SQL agrees bit for bit


def split_value(sha256_hex: str, seed: int) -> float:
    digest = hashlib.sha256(f"{int(seed)}:{sha256_hex}".encode()).hexdigest()
    return int(digest[: _BITS // 4], 16) / float(1 << _BITS)


def check_fraction(test_fraction: float) -> float:
    if not 0.0 < float(test_fraction) < 1.0:
        raise InvalidArgument(
            f"test fraction must be between 0 and 1 (exclusive), got {test_fraction}; "
            "pass e.g. --test-fraction 0.15"
        )
    return float(test_fraction)


def split_of(sha256_hex: str, seed: int, test_fraction: float) -> str:
    return "test" if split_value(sha256_hex, seed) < test_fraction else "train"


def assign_splits(sha256_hexes: Iterable[str], seed: int, test_fraction: float) -> np.ndarray:
    """Array of 'train'/'test' strings, one per identity, in input order."""
    check_fraction(test_fraction)
    return np.array([split_of(h, seed, test_fraction) for h in sha256_hexes], dtype=object)
