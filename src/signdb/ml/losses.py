"""Numerically stable activations and losses, computed from logits in float32.

Nothing here calls ``exp`` on a positive argument, so huge logits never
overflow, and no ``log`` ever sees 0: the losses use the log-sigmoid and
log-softmax forms instead of taking ``log`` of a probability.

Examples
--------
>>> import numpy as np
>>> z = np.array([-1000.0, 0.0, 1000.0], dtype=np.float32)
>>> sigmoid(z)
array([0. , 0.5, 1. ], dtype=float32)
>>> float(binary_cross_entropy(z, np.array([0, 1, 1])))  # (0 + log 2 + 0) / 3
0.2310490608215332
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|``."""
    z = np.asarray(z, dtype=F32)
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, F32(1) / (F32(1) + e), e / (F32(1) + e)).astype(F32, copy=False)


def softplus(z: np.ndarray) -> np.ndarray:
    """``log(1 + exp(z))`` computed as ``max(z, 0) + log1p(exp(-|z|))``."""
    z = np.asarray(z, dtype=F32)
    return np.maximum(z, F32(0)) + np.log1p(np.exp(-np.abs(z)))


def binary_cross_entropy(z: np.ndarray, y: np.ndarray) -> np.float32:
    """Mean of ``-y log sigmoid(z) - (1-y) log(1 - sigmoid(z))`` from logits ``z``.

    Uses ``-log sigmoid(z) = softplus(-z)`` and ``-log(1 - sigmoid(z)) = softplus(z)``,
    so the loss equals ``softplus(z) - y * z``.
    """
    z = np.asarray(z, dtype=F32)
    y = np.asarray(y, dtype=F32)
    return F32(np.mean(softplus(z) - y * z, dtype=F32))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax``; subtracting the row max keeps ``exp`` <= 1."""
    z = np.asarray(z, dtype=F32)
    shifted = z - np.max(z, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits ``z`` of shape ``(n, k)``."""
    z = np.asarray(z, dtype=F32)
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """Mean cross-entropy of logits ``z`` (n, k) against class indices ``y``.

    Returns ``(cost, dz)`` where ``dz = (softmax(z) - onehot(y)) / n`` is the
    gradient of the mean cost with respect to ``z``.
    """
    z = np.asarray(z, dtype=F32)
    y = np.asarray(y, dtype=np.intp)
    n = z.shape[0]
    logp = log_softmax(z)
    rows = np.arange(n)
    cost = F32(-np.mean(logp[rows, y], dtype=F32))
    dz = np.exp(logp)
    dz[rows, y] -= F32(1)
    dz /= F32(n)
    return cost, dz


#: Added to each image's pixel variance so a constant image maps to zeros, not NaN.
STANDARDIZE_EPS = 1e-6


def standardize_per_image(flat: np.ndarray) -> np.ndarray:
    """Shift each row of ``flat`` (n, d) to mean 0 and scale it to standard deviation 1.

    Computed per image, so it needs no statistics from the training set and a
    prediction depends on nothing but the image: ``(x - mean(x)) /
    sqrt(var(x) + 1e-6)``. It removes overall brightness and contrast, which
    differ between photographs far more than between digits.
    """
    flat = np.asarray(flat, dtype=F32)
    centered = flat - np.mean(flat, axis=1, keepdims=True, dtype=F32)
    var = np.mean(centered * centered, axis=1, keepdims=True, dtype=F32)
    return centered / np.sqrt(var + F32(STANDARDIZE_EPS))
