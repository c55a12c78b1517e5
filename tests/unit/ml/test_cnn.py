"""ConvNet: spec parsing, full-loss gradients, determinism, resume exactness, learning."""

from __future__ import annotations

import time

import numpy as np
import pytest

from signdb.errors import InvalidArgument
from signdb.ml import layers as L
from signdb.ml.cnn import DEFAULT_LAYERS, ConvNet, parse_layers

TINY = "conv4-pool-conv6-pool-dense8"


def halves(n: int, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose left (class 0) or right (class 1) half is bright."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, size, size, 1), dtype=np.float32) * np.float32(0.5)
    y = rng.integers(0, 2, n)
    X[y == 0, :, : size // 2] += np.float32(0.5)
    X[y == 1, :, size // 2 :] += np.float32(0.5)
    return X, y


def tiny(**kw) -> ConvNet:
    # The step schedule: these tests drive train_step themselves, with no run to plan a cosine.
    kw = {"layers": TINY, "batch_size": 8, "iterations": 2, "seed": 3, "lr_schedule": "step", **kw}
    return ConvNet(**kw)


# -- spec -------------------------------------------------------------------------
def test_parse_layers_accepts_the_grammar():
    assert parse_layers("Conv8k5-pool-conv16-gap-dense32-dense16") == [
        ("conv", 8, 5),
        ("pool",),
        ("conv", 16, 3),
        ("gap",),
        ("dense", 32),
        ("dense", 16),
    ]
    assert parse_layers(DEFAULT_LAYERS)[0][0] == "conv"


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("conv16-poool-dense8", "'poool'"),
        ("conv0-pool", "'conv0'"),
        ("conv8k4", "'conv8k4'"),  # even kernel: no symmetric "same" padding
        ("dense8-conv4", "'conv4'"),  # image layer after flattening
        ("conv8--pool", "''"),
    ],
)
def test_bad_spec_quotes_the_token_and_shows_the_grammar(spec, bad):
    with pytest.raises(InvalidArgument) as err:
        ConvNet(layers=spec).initialize((8, 8, 1), [0, 1])
    assert bad in str(err.value)
    assert "conv<N>" in str(err.value)


@pytest.mark.parametrize("spec", ["", 42])
def test_empty_or_non_string_spec_is_refused(spec):
    with pytest.raises(InvalidArgument, match="layers spec"):
        ConvNet(layers=spec).initialize((8, 8, 1), [0, 1])


def test_too_many_pools_for_the_image_is_refused():
    with pytest.raises(InvalidArgument, match="fewer 'pool'"):
        ConvNet(layers="conv4-pool-pool-pool").initialize((4, 4, 1), [0, 1])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"l2": -1}, "l2"),
        ({"optimizer": "x"}, "'x'"),
        ({"augment": "false"}, "augment must be true or false"),
        ({"lr_schedule": "linear"}, "'linear'"),
        ({"lr_schedule": "step", "lr_decay_every": 0}, "lr_decay_every"),
    ],
)
def test_bad_hyperparameters_are_refused(kw, match):
    with pytest.raises(InvalidArgument, match=match):
        tiny(**kw).initialize((8, 8, 1), [0, 1])


# -- tensors ----------------------------------------------------------------------
def test_the_default_cosine_needs_the_run_length():
    X, y = halves(8)
    net = ConvNet(layers=TINY).initialize(X.shape[1:], [0, 1])
    with pytest.raises(InvalidArgument, match="no horizon"):
        net.train_step(X, y, 0)
    net.plan(100)
    assert net.optimizer_.lr_at(50) == pytest.approx(net.lr / 2)


def test_params_are_named_float32_contiguous_tensors():
    net = ConvNet().initialize((64, 64, 1), list(range(10)))
    p = net.params_
    assert p["conv0.weight"].shape == (16, 3, 3, 1)
    assert p["conv2.weight"].shape == (64, 3, 3, 32)
    assert p["conv3.weight"].shape == (128, 3, 3, 64)
    assert p["conv4.weight"].shape == (256, 3, 3, 128)
    assert p["dense0.weight"].shape == (10, 256)  # after global average pooling
    assert {"bn0.running_mean", "bn0.running_var", "bn2.weight", "bn2.bias"} <= set(p)
    assert "conv0.bias" not in p  # batch norm's shift makes it redundant
    for key, value in p.items():
        assert value.dtype == np.float32 and value.flags.c_contiguous, key
    assert "conv0.bias" in ConvNet(batch_norm=False).initialize((64, 64, 1), [0, 1]).params_


def test_predict_proba_is_chunked_and_normalised():
    X, y = halves(300)
    net = tiny().fit(X, y)
    proba = net.predict_proba(X)
    assert proba.shape == (300, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    # Chunking (256 rows) must not change any row's answer.
    np.testing.assert_allclose(net.predict_proba(X[250:]), proba[250:], rtol=1e-5, atol=1e-7)


def test_predict_before_fit_is_refused():
    with pytest.raises(InvalidArgument, match="not initialized"):
        ConvNet().predict_proba(np.zeros((1, 8, 8, 1), np.float32))


# -- gradients --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "batch_norm"),
    [(TINY, True), ("conv3k5-gap-dense4", True), ("conv3-pool-dense4", False)],
)
def test_full_loss_gradient_matches_finite_differences(spec, batch_norm):
    """Whole network (conv, BN, pool, dropout, dense, softmax loss) in float64."""
    net = ConvNet(layers=spec, dropout=0.3, batch_norm=batch_norm, seed=1)
    net.initialize((8, 8, 2), [0, 1, 2])
    rng = np.random.default_rng(0)
    # Non-zero biases keep every ReLU away from its kink at exactly 0.
    net.params_ = {
        k: v.astype(np.float64) + 0.05 * rng.standard_normal(v.shape)
        for k, v in net.params_.items()
    }
    X = rng.random((4, 8, 8, 2))
    y = np.array([0, 1, 2, 1])

    def loss() -> float:
        return L.softmax_cross_entropy(net._run(X, training=True, step=5)[0], y)[0]

    logits, caches = net._run(X, training=True, step=5)
    grads = net._backward(L.softmax_cross_entropy(logits, y)[1], caches)
    trainable = {k for k in net.params_ if not k.endswith(("running_mean", "running_var"))}
    assert set(grads) == trainable
    eps = 1e-6
    for key in sorted(trainable):
        v = net.params_[key]
        num = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            old = v[i]
            v[i] = old + eps
            up = loss()
            v[i] = old - eps
            num[i] = (up - loss()) / (2 * eps)
            v[i] = old
        err = np.abs(num - grads[key]).max() / max(1e-8, np.abs(num).max())
        assert err < 1e-5, f"{key}: relative error {err:.1e}"


def test_l2_adds_to_cost_and_shrinks_weights():
    X, y = halves(16)
    plain = tiny(augment=False, dropout=0.0, l2=0.0).initialize(X.shape[1:], [0, 1])
    decayed = tiny(augment=False, dropout=0.0, l2=0.5).initialize(X.shape[1:], [0, 1])
    weights = [v for k, v in decayed.params_.items() if k.startswith(("conv", "dense"))]
    expected = 0.5 * 0.5 * sum(float(np.vdot(w, w)) for w in weights if w.ndim > 1)
    assert decayed.train_step(X, y, 0).cost - plain.train_step(X, y, 0).cost == pytest.approx(
        expected, rel=1e-4
    )
    # Same gradient step apart from the decay term: the decayed weights end up smaller.
    for key in ("conv0.weight", "dense0.weight"):
        assert np.linalg.norm(decayed.params_[key]) < np.linalg.norm(plain.params_[key])


# -- determinism and resume -------------------------------------------------------
def _bytes(state: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in state.items()}


def test_same_seed_gives_byte_identical_state():
    X, y = halves(40)
    a = tiny().fit(X, y).state_dict()
    b = tiny().fit(X, y).state_dict()
    assert _bytes(a) == _bytes(b)
    assert any(k.startswith("optim.") for k in a)
    c = tiny(seed=4).fit(X, y).state_dict()
    assert _bytes(a) != _bytes(c)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_resume_continues_byte_for_byte(schedule):
    X, y = halves(40)
    batches = [np.arange(i, i + 8) % 40 for i in range(0, 80, 8)]

    def planned() -> ConvNet:  # what the trainer does before step 0, and again on resume
        net = tiny(lr_schedule=schedule).initialize(X.shape[1:], [0, 1])
        net.plan(len(batches))
        return net

    straight = planned()
    for step, idx in enumerate(batches):
        straight.train_step(X[idx], y[idx], step)

    first = planned()
    for step, idx in enumerate(batches[:4]):
        first.train_step(X[idx], y[idx], step)
    saved = {k: v.copy() for k, v in first.state_dict().items()}

    resumed = planned().load_state_dict(saved)
    for step, idx in enumerate(batches[4:], start=4):
        resumed.train_step(X[idx], y[idx], step)
    assert _bytes(resumed.state_dict()) == _bytes(straight.state_dict())


def test_stored_weights_rebuild_the_same_predictor():
    X, y = halves(40)
    net = tiny().fit(X, y)
    # Running statistics moved away from their initial values and travel along.
    assert not np.array_equal(net.params_["bn0.running_var"], np.ones(4, np.float32))
    params_only = {k: v for k, v in net.state_dict().items() if not k.startswith("optim.")}
    rebuilt = tiny().initialize(X.shape[1:], [0, 1]).load_state_dict(params_only)
    assert net.predict_proba(X).tobytes() == rebuilt.predict_proba(X).tobytes()


# -- learning ---------------------------------------------------------------------
def test_tiny_cnn_learns_a_separable_task_quickly():
    X, y = halves(240, size=16)
    Xt, yt = halves(100, size=16, seed=1)
    start = time.perf_counter()
    net = ConvNet(layers="conv4-pool-conv8-pool-dense16", iterations=4, batch_size=16, lr=0.01)
    net.fit(X, y)
    assert time.perf_counter() - start < 10
    assert (net.predict(Xt) == yt).mean() >= 0.95


def test_hyperparameters_round_trip_through_get_params():
    params = ConvNet(layers=TINY, dropout=0.1).get_params()
    assert params["layers"] == TINY and params["dropout"] == 0.1
    assert not any(k.endswith("_") for k in params)
    assert ConvNet(**params).get_params() == params


def test_the_default_architecture_fits_small_images():
    """`layers="auto"` (the default) stops pooling at about 4x4 instead of refusing 8x8 images."""
    rng = np.random.default_rng(0)
    X = rng.random((16, 8, 8, 3), dtype=np.float32) * 0.2
    X[:8, :, :4] += 0.8
    y = np.repeat([0, 1], 8)
    net = ConvNet(iterations=2, batch_size=8, augment=False).fit(X, y)
    assert net.get_params()["layers"] == "auto"
    assert [layer[0] for layer in net.spec_].count("pool") == 1  # 8 -> 4, then no further
    assert net.predict_proba(X).shape == (16, 2)
    # At 64x64 "auto" is exactly the documented default architecture.
    big = ConvNet().initialize((64, 64, 1), [0, 1])
    explicit = ConvNet(layers=DEFAULT_LAYERS).initialize((64, 64, 1), [0, 1])
    assert big.spec_ == explicit.spec_
    assert {k: v.shape for k, v in big.params_.items()} == {
        k: v.shape for k, v in explicit.params_.items()
    }
    # An explicit spec is taken as written, and still refuses to pool below 1x1.
    with pytest.raises(InvalidArgument, match="below 1x1"):
        ConvNet(layers=DEFAULT_LAYERS).initialize((8, 8, 1), [0, 1])
