"""Small folder-per-label trees copied from the shared reference dataset (never committed)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dataset_dir(shared_dataset: Path) -> Path:
    return shared_dataset  # tests/conftest.py: $SIGNDB_DATASET_DIR or the shared copy


def copy_subset(dataset_dir: Path, dest: Path, per_label: int) -> Path:
    """A folder-per-label tree with the first ``per_label`` images of each label."""
    for label_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        out = dest / label_dir.name
        out.mkdir(parents=True)
        for f in sorted(label_dir.iterdir())[:per_label]:
            shutil.copy(f, out / f.name)
    return dest


@pytest.fixture
def make_subset(dataset_dir: Path) -> Callable[[Path, int], Path]:
    return lambda dest, per_label: copy_subset(dataset_dir, dest, per_label)


@pytest.fixture
def small_tree(dataset_dir: Path, tmp_path: Path) -> Path:
    return copy_subset(dataset_dir, tmp_path / "tree", per_label=3)
