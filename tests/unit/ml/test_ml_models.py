"""Behaviour every signdb model shares: determinism, exact resume, stability, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from signdb.errors import InvalidArgument
from signdb.ml import build_model
from signdb.ml.losses import binary_cross_entropy, sigmoid, softmax, softmax_cross_entropy

SMALL = {
    "logreg": {"lr": 0.1, "iterations": 6},
    "softmax": {"lr": 0.05, "iterations": 4, "batch_size": 5},
    "softmax-momentum": {"lr": 0.05, "iterations": 4, "batch_size": 5, "optimizer": "momentum"},
    "mlp": {"hidden": (6, 5), "lr": 0.01, "iterations": 4, "batch_size": 5, "l2": 0.01},
    "mlp-momentum": {
        "hidden": (6,),
        "lr": 0.01,
        "iterations": 4,
        "batch_size": 5,
        "optimizer": "momentum",
        "lr_schedule": "step",
        "lr_decay_every": 3,
    },
}


def model(key: str, **extra):
    return build_model(key.split("-")[0], **{**SMALL[key], **extra})


def synthetic(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images of 4x4 noise with a bright pixel whose position gives the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    X = rng.random((n, 4, 4, 1), dtype=np.float32) * np.float32(0.3)
    X[np.arange(n), labels // 4, labels % 4, 0] += np.float32(0.7)
    return X, labels


def data_for(key: str) -> tuple[np.ndarray, np.ndarray]:
    return synthetic(22, 2 if key == "logreg" else 3)


def schedule(m, n: int) -> list[np.ndarray]:
    return [idx for epoch in range(m.iterations) for idx in m.batches(n, epoch)]


def assert_states_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == np.float32 and b[k].dtype == np.float32, k
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.parametrize("key", sorted(SMALL))
def test_same_seed_is_byte_identical(key: str) -> None:
    X, labels = data_for(key)
    a = model(key).fit(X, labels).state_dict()
    b = model(key).fit(X, labels).state_dict()
    assert_states_identical(a, b)


def test_different_seed_gives_different_mlp_weights() -> None:
    X, labels = data_for("mlp")
    a = model("mlp", seed=1).fit(X, labels).state_dict()
    b = model("mlp", seed=2).fit(X, labels).state_dict()
    assert a["dense0.weight"].tobytes() != b["dense0.weight"].tobytes()


def test_mlp_tensor_names_shapes_and_he_init() -> None:
    m = build_model("mlp", hidden=(300, 200)).initialize((20, 20, 1), [0, 1, 2])
    shapes = {k: v.shape for k, v in m.params_.items()}
    assert shapes == {
        "dense0.weight": (400, 300),
        "dense0.bias": (300,),
        "dense1.weight": (300, 200),
        "dense1.bias": (200,),
        "dense2.weight": (200, 3),
        "dense2.bias": (3,),
    }
    assert np.std(m.params_["dense0.weight"]) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert not m.params_["dense1.bias"].any()


@pytest.mark.parametrize("key", sorted(SMALL))
@pytest.mark.parametrize("flat", [False, True], ids=["shaped", "flat-real-array"])
def test_resume_continues_bit_identically(key: str, flat: bool) -> None:
    X, labels = data_for(key)
    y = np.searchsorted(np.unique(labels), labels)
    classes = np.unique(labels)
    whole = model(key).initialize(X.shape[1:], classes)
    plan = schedule(whole, len(X))
    for step, idx in enumerate(plan):
        whole.train_step(X[idx], y[idx], step)

    first = model(key).initialize(X.shape[1:], classes)
    cut = len(plan) // 2 + 1  # mid-epoch for the mini-batch models
    for step, idx in enumerate(plan[:cut]):
        first.train_step(X[idx], y[idx], step)
    saved = first.state_dict()
    if key != "logreg" and key != "softmax":
        assert any(k.startswith("optim.") for k in saved), "optimizer state must be saved"
    if flat:  # what a round trip through weights.data real[] gives back
        saved = {k: np.array(v.ravel().tolist(), dtype=np.float32) for k, v in saved.items()}
    resumed = model(key).initialize(X.shape[1:], classes).load_state_dict(saved)
    for step, idx in enumerate(plan[cut:], start=cut):
        resumed.train_step(X[idx], y[idx], step)
    assert_states_identical(resumed.state_dict(), whole.state_dict())


def test_state_dict_is_a_snapshot_not_a_view() -> None:
    X, labels = data_for("mlp")
    m = model("mlp").initialize(X.shape[1:], [0, 1, 2])
    saved = m.state_dict()
    before = saved["dense0.weight"].copy()
    other = model("mlp").initialize(X.shape[1:], [0, 1, 2]).load_state_dict(saved)
    m.train_step(X, labels, 0)
    np.testing.assert_array_equal(saved["dense0.weight"], before)
    np.testing.assert_array_equal(other.params_["dense0.weight"], before)


def test_resume_without_optimizer_state_differs_for_adam() -> None:
    """Guards the test above: dropping Adam's moments must change the result."""
    X, labels = data_for("mlp")
    y = np.searchsorted(np.unique(labels), labels)
    m = model("mlp", optimizer="adam").initialize(X.shape[1:], [0, 1, 2])
    for step in range(3):
        m.train_step(X, y, step)
    params_only = {k: v for k, v in m.state_dict().items() if not k.startswith("optim.")}
    other = model("mlp", optimizer="adam").initialize(X.shape[1:], [0, 1, 2])
    other.load_state_dict(params_only)
    m.train_step(X, y, 3)
    other.train_step(X, y, 3)
    assert m.params_["dense0.weight"].tobytes() != other.params_["dense0.weight"].tobytes()


def test_optimizer_state_of_wrong_size_is_refused() -> None:
    X, labels = data_for("mlp")
    m = model("mlp").initialize(X.shape[1:], [0, 1, 2])
    m.train_step(X, labels, 0)
    state = m.state_dict()
    state["optim.dense0.weight.m"] = np.zeros(3, dtype=np.float32)
    m2 = model("mlp").initialize(X.shape[1:], [0, 1, 2]).load_state_dict(state)
    with pytest.raises(InvalidArgument, match=r"'dense0.weight.m' has shape \(3,\)"):
        m2.train_step(X, labels, 1)


@pytest.mark.parametrize(
    ("name", "hp"),
    [
        ("logreg", {}),
        ("softmax", {"standardize": False}),
        ("mlp", {"standardize": False, "hidden": (8,)}),
        ("mlp", {"hidden": (8,)}),
    ],
)
def test_huge_inputs_raise_no_floating_point_errors(name: str, hp: dict) -> None:
    X, labels = synthetic(12, 2)
    X *= np.float32(1e4)
    m = build_model(name, lr=1.0, iterations=1, **hp).initialize(X.shape[1:], [0, 1])
    # Underflow to 0 is the correct answer of exp(-huge), and numpy ignores it by default.
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        costs = [m.train_step(X, labels, step).cost for step in range(5)]
        proba = m.predict_proba(X)
    assert np.all(np.isfinite(costs))
    assert np.all(np.isfinite(proba)) and proba.min() >= 0 and proba.max() <= 1


def test_losses_are_stable_at_extreme_logits() -> None:
    z = np.array([-1e30, -100.0, 0.0, 100.0, 1e30], dtype=np.float32)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = sigmoid(z)
        assert s[0] == 0.0 and 0.0 <= s[1] < 1e-40 and s[2:].tolist() == [0.5, 1.0, 1.0]
        # A confident wrong prediction costs |z|, not inf; a right one costs ~0.
        assert float(binary_cross_entropy(np.float32([1e30]), [0])) == pytest.approx(1e30)
        assert 0.0 <= float(binary_cross_entropy(np.float32([-100.0]), [0])) < 1e-40
        logits = np.array([[1e30, -1e30, 0.0], [5.0, 5.0, 5.0]], dtype=np.float32)
        p = softmax(logits)
        cost, grad = softmax_cross_entropy(logits, np.array([0, 2]))
    assert p[0].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)
    assert cost == pytest.approx(np.log(3) / 2, rel=1e-6)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "hp", "needle"),
    [
        ("logreg", {"lr": 0}, "learning rate must be > 0, got 0"),
        ("softmax", {"lr": -0.5}, "got -0.5"),
        ("mlp", {"iterations": 0}, "iterations must be >= 1, got 0"),
        ("mlp", {"hidden": (128, 0)}, "got (128, 0)"),
        ("mlp", {"hidden": ()}, "got ()"),
        ("mlp", {"hidden": (12.5,)}, "got (12.5,)"),
        ("mlp", {"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; choose one of sgd, momentum"),
        ("softmax", {"l2": -1.0}, "l2 must be a number >= 0, got -1.0"),
        ("softmax", {"standardize": "yes"}, "got 'yes'"),
        (
            "mlp",
            {"lr_schedule": "cosine", "total_steps": 0},
            "total_steps must be a positive integer",
        ),
        ("mlp", {"batch_size": 0}, "batch size must be >= 1, got 0"),
    ],
)
def test_bad_hyperparameters_are_named(name: str, hp: dict, needle: str) -> None:
    m = build_model(name, **hp)
    with pytest.raises(InvalidArgument) as info:
        m.initialize((2, 2, 1), [0, 1])
    assert needle in str(info.value)


def test_hidden_as_json_list_is_accepted() -> None:
    m = build_model("mlp", hidden=[4, 3]).initialize((2, 2, 1), [0, 1])
    assert m.params_["dense1.weight"].shape == (4, 3)


@pytest.mark.parametrize("name", ["logreg", "softmax", "mlp"])
def test_predict_proba_before_fit_refuses(name: str) -> None:
    with pytest.raises(InvalidArgument, match="not initialized; call fit"):
        build_model(name).predict_proba(np.zeros((1, 2, 2, 1), dtype=np.float32))


@pytest.mark.parametrize(
    ("name", "n_classes", "hp"),
    [
        ("logreg", 2, {"lr": 0.5, "iterations": 300}),
        ("softmax", 5, {}),
        ("softmax", 5, {"optimizer": "adam", "lr": 0.01, "l2": 1e-4}),
        ("mlp", 5, {"hidden": (32,), "iterations": 40}),
        ("mlp", 5, {"hidden": (32,), "optimizer": "momentum", "lr": 0.02, "iterations": 40}),
    ],
)
def test_learns_a_separable_problem(name: str, n_classes: int, hp: dict) -> None:
    X, labels = synthetic(400, n_classes, seed=1)
    X_test, labels_test = synthetic(200, n_classes, seed=2)
    m = build_model(name, **hp).fit(X, labels)
    assert (m.predict(X_test) == labels_test).mean() >= 0.95
    proba = m.predict_proba(X_test)
    assert proba.shape == (200, n_classes) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
