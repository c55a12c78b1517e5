"""Deterministic train/val/test assignment derived from image identity.

An image's split depends only on ``(sha256 of its pixels, seed, fractions)``:
``u = first 52 bits of sha256(f"{seed}:{sha256_hex}") / 2**52``; the image is
in test when ``u < test_fraction``, in val when ``u < test_fraction +
val_fraction``, and in train otherwise. So adding images later never moves an
existing one, adding a val split never moves a test image, re-ordering a load
changes nothing, and the same rule is written in SQL (``signdb.split_of``,
``signdb.split_fraction``) so analysts get identical answers.

Because ``u`` is uniform and independent of the label, every label receives
``test_fraction`` of its images in expectation: the split is stratified per
label in distribution. (Rank-based exact stratification would move existing
images whenever a label gains new ones.)

Examples
--------
>>> u = split_value("ab" * 32, seed=42)
>>> 0 <= u < 1
True
>>> split_of("ab" * 32, 42, test_fraction=u + 1e-9)  # just above u: test
'test'
>>> split_of("ab" * 32, 42, test_fraction=u / 2, val_fraction=u)
'val'
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from signdb.errors import InvalidArgument

_BITS = 52  # a double represents every 52-bit integer exactly, so SQL agrees bit for bit
SPLITS = ("train", "val", "test")
#: Names a source may give a split (folder names, CSV cells, Parquet file names),
#: lower-cased, and the split each stands for.
SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def split_value(sha256_hex: str, seed: int) -> float:
    digest = hashlib.sha256(f"{int(seed)}:{sha256_hex}".encode()).hexdigest()
    return int(digest[: _BITS // 4], 16) / float(1 << _BITS)


def check_fraction(test_fraction: float) -> float:
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise InvalidArgument(
            f"test fraction must be between 0 and 1 (exclusive), got {test_fraction}; "
            "pass e.g. --test-fraction 0.15"
        )
    return float(test_fraction)


def check_fractions(test_fraction: float, val_fraction: float = 0.0) -> tuple[float, float]:
    """Validated (test, val) fractions: 0 < test, 0 <= val, test + val < 1."""
    test = check_fraction(test_fraction)
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= float(val_fraction) < 1.0:
        raise InvalidArgument(
            f"val fraction must be at least 0 and below 1, got {val_fraction}; "
            "pass e.g. --val-fraction 0.15"
        )
    if test + float(val_fraction) >= 1.0:
        raise InvalidArgument(
            f"--test-fraction {test_fraction} plus --val-fraction {val_fraction} leaves no "
            "images to train on; make the two add up to less than 1"
        )
    return test, float(val_fraction)


def split_of(sha256_hex: str, seed: int, test_fraction: float, val_fraction: float = 0.0) -> str:
    u = split_value(sha256_hex, seed)
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


SPLIT_MODES = ("auto", "fixed", "hash")


@dataclass(frozen=True)
class SplitPlan:
    """How a run's images are split.

    ``hash``: by the hash rule with the fractions. ``fixed``: by the split each
    image carries from a pre-split source; when the source fixed no val images,
    ``val_fraction`` carves val out of its train images by the hash rule
    (``carve_val``). ``auto`` is resolved to one of the two before a plan is made.
    """

    mode: str
    seed: int
    test_fraction: float
    val_fraction: float = 0.0
    carve_val: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_mode(mode: str) -> str:
    if mode not in SPLIT_MODES:
        raise InvalidArgument(f"--split must be auto, fixed or hash, got {mode!r}")
    return mode


def plan_split(
    mode: str,
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    images: int,
    with_split: int,
    fixed_val: int,
    what: str = "the dataset",
) -> SplitPlan:
    """Resolve ``--split auto|fixed|hash`` given how many of the images carry a fixed split."""
    check_mode(mode)
    test_fraction, val_fraction = check_fractions(test_fraction, val_fraction)
    if mode == "auto":
        mode = "fixed" if images and with_split == images else "hash"
    elif mode == "fixed" and with_split < images:
        raise InvalidArgument(
            f"--split fixed: {images - with_split} of the {images} images of {what} carry no "
            "fixed split (they were not loaded from train/ and test/ folders or a split "
            "column); use --split hash"
        )
    if mode == "hash":
        return SplitPlan("hash", seed, test_fraction, val_fraction)
    return SplitPlan("fixed", seed, test_fraction, val_fraction, carve_val=fixed_val == 0)
