"""Training-time augmentation: small random shifts, rotations and zooms.

One bilinear affine resample per batch, done with numpy index arithmetic (no
loop over images or pixels). The random draws come only from
:func:`signdb.ml.base.step_rng` with ``(seed, step, AUGMENT_STREAM)``, so a
resumed run augments step ``k`` exactly as an uninterrupted one does.
Pixels that map outside the image take the nearest edge value, which matches
the mostly uniform backgrounds of hand photos better than black.
"""

from __future__ import annotations

import numpy as np

from signdb.ml.base import step_rng

#: ``step_rng`` stream reserved for augmentation (dropout uses another one).
AUGMENT_STREAM = 11


def random_affine(
    X: np.ndarray,
    seed: int,
    step: int,
    *,
    max_shift: float = 0.1,
    max_rotation: float = 10.0,
    max_zoom: float = 0.1,
    stream: int = AUGMENT_STREAM,
    rows: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Return a randomly shifted, rotated and zoomed copy of ``X``.

    ``X`` is ``(n, h, w, c)``. Per image, the shift is uniform in
    ``±max_shift`` of the height/width, the rotation uniform in
    ``±max_rotation`` degrees and the zoom factor uniform in
    ``1 ± max_zoom``. With all three at 0 the result equals ``X`` exactly.
    The output has ``X``'s dtype, and because bilinear interpolation is a
    convex combination it stays within ``X``'s value range.

    Examples:
        >>> X = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
        >>> Y = random_affine(X, seed=42, step=3)
        >>> Y.shape, Y.dtype, np.array_equal(Y, random_affine(X, seed=42, step=3))
        ((2, 8, 8, 1), dtype('float32'), True)
        >>> np.array_equal(random_affine(X, 42, 3, max_shift=0, max_rotation=0, max_zoom=0), X)
        True
    """
    n, h, w, c = X.shape
    rng = step_rng(seed, step, stream)
    f = np.float32
    start, total, stride = rows or (0, n, 1)
    u = rng.uniform(-1.0, 1.0, size=(4, total)).astype(f)[:, start::stride]
    theta = u[0] * f(np.deg2rad(max_rotation))
    zoom = f(1) + u[1] * f(max_zoom)
    ty, tx = u[2] * f(max_shift * h), u[3] * f(max_shift * w)

    # Inverse map: output pixel -> source coordinates, about the image centre.
    cy, cx = f((h - 1) / 2), f((w - 1) / 2)
    cos, sin = np.cos(theta) / zoom, np.sin(theta) / zoom
    gy = np.arange(h, dtype=f)[None, :, None] - cy - ty[:, None, None]
    gx = np.arange(w, dtype=f)[None, None, :] - cx - tx[:, None, None]
    a, b = cos[:, None, None], sin[:, None, None]
    sy = np.clip(a * gy - b * gx + cy, 0, h - 1)
    sx = np.clip(b * gy + a * gx + cx, 0, w - 1)

    y0 = np.floor(sy).astype(np.intp)
    x0 = np.floor(sx).astype(np.intp)
    wy = (sy - y0).astype(f)[..., None]
    wx = (sx - x0).astype(f)[..., None]
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)

    flat = X.reshape(n * h * w, c)
    base = (np.arange(n) * (h * w))[:, None, None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return flat[base + yy * w + xx]

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    out = top * (1 - wy) + bottom * wy
    # Rounding can push a convex combination one ulp past its inputs.
    np.clip(out, X.min(), X.max(), out=out)
    return out.astype(X.dtype, copy=False)
