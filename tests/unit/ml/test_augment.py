"""Random affine augmentation: seeded by (seed, step) only, shape/dtype/range preserving."""

from __future__ import annotations

import numpy as np
import pytest

from signdb.ml.augment import random_affine


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).random((6, 16, 12, 2), dtype=np.float32)


def test_same_seed_and_step_draw_the_same_batch(batch):
    a = random_affine(batch, seed=42, step=7)
    b = random_affine(batch.copy(), seed=42, step=7)
    assert a.tobytes() == b.tobytes()


def test_other_step_or_seed_draws_differently(batch):
    a = random_affine(batch, seed=42, step=7)
    assert not np.array_equal(a, random_affine(batch, seed=42, step=8))
    assert not np.array_equal(a, random_affine(batch, seed=43, step=7))


def test_preserves_shape_dtype_and_range(batch):
    out = random_affine(batch, 1, 2, max_shift=0.3, max_rotation=30, max_zoom=0.3)
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= batch.min() and out.max() <= batch.max()
    assert not np.shares_memory(out, batch)


def test_zero_magnitudes_are_the_identity(batch):
    out = random_affine(batch, 5, 9, max_shift=0, max_rotation=0, max_zoom=0)
    np.testing.assert_array_equal(out, batch)


def test_pure_shift_moves_content():
    # A single bright pixel; a whole-pixel shift (rotation/zoom off) must move it.
    x = np.zeros((1, 9, 9, 1), dtype=np.float32)
    x[0, 4, 4, 0] = 1
    out = random_affine(x, 0, 0, max_shift=0.5, max_rotation=0, max_zoom=0)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)  # bilinear keeps the mass inside the frame
    assert out[0, 4, 4, 0] < 1.0


def test_images_in_a_batch_get_different_transforms():
    x = np.tile(np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8, 1), (4, 1, 1, 1))
    out = random_affine(x, 3, 4)
    assert len({out[i].tobytes() for i in range(4)}) == 4
