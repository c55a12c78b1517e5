"""Layer forward passes against naive references, backward passes against finite differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from signdb.ml import layers as L


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar ``f()`` w.r.t. every entry of ``x`` (mutated, restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def assert_close(analytic: np.ndarray, numeric: np.ndarray, tol: float = 1e-6) -> None:
    err = np.abs(analytic - numeric).max() / max(1e-8, np.abs(numeric).max())
    assert err < tol, f"relative gradient error {err:.2e}"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def naive_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    n, h, wd, c = x.shape
    f, kh, kw, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, oh, ow, f))
    for r in range(oh):
        for s in range(ow):
            patch = xp[:, r : r + kh, s : s + kw, :]
            out[:, r, s, :] = np.einsum("nijc,fijc->nf", patch, w) + b
    return out


@pytest.mark.parametrize(("k", "pad"), [(3, 1), (5, 2), (3, 0)])
def test_conv_forward_matches_naive_loop(rng, k, pad):
    x = rng.standard_normal((2, 6, 7, 3))
    w = rng.standard_normal((4, k, k, 3))
    b = rng.standard_normal(4)
    out, _ = L.conv2d_forward(x, w, b, pad)
    np.testing.assert_allclose(out, naive_conv(x, w, b, pad), rtol=1e-10, atol=1e-10)


def test_conv_input_grad_is_the_adjoint_of_the_forward_pass(rng):
    # <conv(x), d> == <x, conv_input_grad(d)> for a bias-free convolution.
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((4, 3, 3, 3))
    out, _ = L.conv2d_forward(x, w, None, 1)
    d = rng.standard_normal(out.shape)
    dx = L.conv2d_input_grad(d.reshape(-1, 4), w, x.shape, 1)
    assert np.vdot(out, d) == pytest.approx(np.vdot(x, dx), rel=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_conv_backward_matches_finite_differences(rng, bias):
    x = rng.standard_normal((2, 5, 5, 2))
    w = rng.standard_normal((3, 3, 3, 2))
    b = rng.standard_normal(3) if bias else None
    up = rng.standard_normal((2, 5, 5, 3))

    def loss() -> float:
        return float(np.vdot(L.conv2d_forward(x, w, b, 1)[0], up))

    _, cache = L.conv2d_forward(x, w, b, 1)
    dx, dw, db = L.conv2d_backward(up, cache)
    assert_close(dx, numeric_grad(loss, x))
    assert_close(dw, numeric_grad(loss, w))
    if bias:
        assert_close(db, numeric_grad(loss, b))
    else:
        assert db is None
    assert L.conv2d_backward(up, cache, need_dx=False)[0] is None


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (1, 5, 5, 2)])  # even and odd sizes
def test_maxpool_forward_and_backward(rng, shape):
    x = rng.standard_normal(shape)
    out, cache = L.maxpool2_forward(x)
    n, h, w, c = shape
    ref = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    np.testing.assert_array_equal(out, ref)
    up = rng.standard_normal(out.shape)
    dx = L.maxpool2_backward(up, cache)
    assert dx.shape == x.shape
    assert_close(dx, numeric_grad(lambda: float(np.vdot(L.maxpool2_forward(x)[0], up)), x))


def test_global_avgpool_backward(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    out, cache = L.global_avgpool_forward(x)
    np.testing.assert_allclose(out, x.mean(axis=(1, 2)))
    up = rng.standard_normal(out.shape)
    fd = numeric_grad(lambda: float(np.vdot(L.global_avgpool_forward(x)[0], up)), x)
    assert_close(L.global_avgpool_backward(up, cache), fd)


def _bn(x, gamma, beta, training=True, stats=None):
    mean, var = stats if stats is not None else (np.zeros(x.shape[-1]), np.ones(x.shape[-1]))
    return L.batchnorm_forward(x, gamma, beta, mean, var, training=training)


def test_batchnorm_normalises_and_updates_running_stats(rng):
    x = rng.standard_normal((8, 3, 3, 4)) * 3 + 5
    stats = (np.zeros(4), np.ones(4))
    out, _ = _bn(x, np.ones(4), np.zeros(4), stats=stats)
    np.testing.assert_allclose(out.reshape(-1, 4).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.reshape(-1, 4).std(axis=0), 1, atol=1e-4)
    batch_mean = x.reshape(-1, 4).mean(axis=0)
    np.testing.assert_allclose(stats[0], 0.1 * batch_mean)  # momentum 0.9 from 0
    # Inference uses the running statistics, not the batch ones.
    out_eval, _ = _bn(x, np.ones(4), np.zeros(4), training=False, stats=(batch_mean, np.ones(4)))
    np.testing.assert_allclose(out_eval, (x - batch_mean) / np.sqrt(1 + 1e-5))


def test_batchnorm_backward_matches_finite_differences(rng):
    x = rng.standard_normal((3, 2, 2, 3)) * 2 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    up = rng.standard_normal(x.shape)

    def loss() -> float:
        return float(np.vdot(_bn(x, gamma, beta)[0], up))

    dx, dgamma, dbeta = L.batchnorm_backward(up, _bn(x, gamma, beta)[1])
    assert_close(dx, numeric_grad(loss, x))
    assert_close(dgamma, numeric_grad(loss, gamma))
    assert_close(dbeta, numeric_grad(loss, beta))


def test_dense_relu_and_softmax_cross_entropy_backward(rng):
    x = rng.standard_normal((4, 5))
    w, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    y = np.array([0, 2, 1, 2])

    def loss() -> float:
        h, _ = L.dense_forward(x, w, b)
        return L.softmax_cross_entropy(L.relu_forward(h)[0], y)[0]

    h, dcache = L.dense_forward(x, w, b)
    r, rcache = L.relu_forward(h)
    value, dlogits = L.softmax_cross_entropy(r, y)
    assert value == pytest.approx(loss())
    dx, dw, db = L.dense_backward(L.relu_backward(dlogits, rcache), dcache)
    assert_close(dx, numeric_grad(loss, x))
    assert_close(dw, numeric_grad(loss, w))
    assert_close(db, numeric_grad(loss, b))


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=np.float32)
    value, grad = L.softmax_cross_entropy(logits, np.array([0, 0]))
    assert value == pytest.approx(1000.0)  # (0 + 2000) / 2
    assert np.isfinite(grad).all() and grad.dtype == np.float32
    np.testing.assert_allclose(L.softmax(logits).sum(axis=1), 1)


def test_dropout_mask_rate_and_scale():
    mask = L.dropout_mask(np.random.default_rng(1), (200, 100), 0.25)
    assert mask.dtype == np.float32
    assert set(np.unique(mask)) == {np.float32(0), np.float32(1 / 0.75)}
    assert (mask == 0).mean() == pytest.approx(0.25, abs=0.02)


def test_float32_in_float32_out(rng):
    x = rng.random((2, 6, 6, 1), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 1)).astype(np.float32)
    out, cache = L.conv2d_forward(x, w, None, 1)
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    out, bcache = L.batchnorm_forward(out, ones, zeros, zeros.copy(), ones.copy(), training=True)
    pooled, pcache = L.maxpool2_forward(out)
    assert {out.dtype, pooled.dtype} == {np.dtype(np.float32)}
    d = L.maxpool2_backward(np.ones_like(pooled), pcache)
    d, dg, db = L.batchnorm_backward(d, bcache)
    dx, dw, _ = L.conv2d_backward(d, cache)
    assert {a.dtype for a in (d, dg, db, dx, dw)} == {np.dtype(np.float32)}
