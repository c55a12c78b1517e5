"""The torch engine: same contract, architecture and numbers as the numpy models."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from signdb.errors import InvalidArgument  # noqa: E402
from signdb.ml import torchbase  # noqa: E402
from signdb.ml.cnn import DEFAULT_LAYERS, ConvNet  # noqa: E402
from signdb.ml.mlp import MLPClassifier  # noqa: E402
from signdb.ml.torchbase import require_torch, resolve_device  # noqa: E402
from signdb.ml.torchnet import TorchConvNet, TorchMLP  # noqa: E402

TINY = "conv4-pool-conv6-pool-dense8"
PAIRS = [(ConvNet, TorchConvNet), (MLPClassifier, TorchMLP)]


def halves(n: int, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose left (class 0) or right (class 1) half is bright."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, size, size, 1), dtype=np.float32) * np.float32(0.5)
    y = rng.integers(0, 2, n)
    X[y == 0, :, : size // 2] += np.float32(0.5)
    X[y == 1, :, size // 2 :] += np.float32(0.5)
    return X, y


def tiny(**kw) -> TorchConvNet:
    # The step schedule: these tests drive train_step themselves, with no run to plan a cosine.
    kw = {"layers": TINY, "batch_size": 8, "iterations": 2, "seed": 3, "lr_schedule": "step", **kw}
    return TorchConvNet(**kw)


def small_mlp(**kw) -> TorchMLP:
    return TorchMLP(**{"hidden": (6, 5), "batch_size": 8, "iterations": 2, "lr": 0.01, **kw})


def _bytes(state: dict[str, np.ndarray]) -> dict[str, tuple[str, bytes]]:
    return {k: (v.dtype.str, v.tobytes()) for k, v in state.items()}


def _n_params(model) -> int:
    if hasattr(model, "module_"):
        return sum(p.numel() for p in model.module_.parameters())
    return sum(v.size for k, v in model.params_.items() if not k.endswith(("_mean", "_var")))


# -- the contract -------------------------------------------------------------------
@pytest.mark.parametrize(("numpy_cls", "torch_cls"), PAIRS)
def test_same_constructor_and_hyperparameters_as_numpy(numpy_cls, torch_cls):
    assert inspect.signature(torch_cls.__init__) == inspect.signature(numpy_cls.__init__)
    assert torch_cls.param_names() == numpy_cls.param_names()
    assert (torch_cls.name, torch_cls.engine) == (numpy_cls.name, "torch")
    params = torch_cls(seed=7, lr=0.05).get_params()
    assert params == numpy_cls(seed=7, lr=0.05).get_params()
    assert torch_cls(**params).get_params() == params
    assert "device" not in params


def test_nothing_else_imports_torch():
    code = (
        "import pkgutil, importlib, sys, signdb.ml, signdb.training, signdb.evaluation\n"
        "for m in pkgutil.iter_modules(signdb.ml.__path__, 'signdb.ml.'):\n"
        "    if not m.name.startswith('signdb.ml.torch'): importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_torch_is_reported(monkeypatch):
    monkeypatch.setattr(torchbase, "torch", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'signdb\[torch\]'"):
        require_torch()
    with pytest.raises(InvalidArgument, match="needs PyTorch"):
        tiny().initialize((8, 8, 1), [0, 1])


# -- device -------------------------------------------------------------------------
def test_device_rules(monkeypatch):
    assert tiny().device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"
    with pytest.raises(InvalidArgument, match="--device auto"):
        tiny().set_device("cuda")
    with pytest.raises(InvalidArgument, match="'tpu'.*auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # resolve_device sets it for CUDA
    assert resolve_device("auto").type == "cuda"


def test_set_device_on_a_trained_model_keeps_its_state():
    X, y = halves(16)
    net = tiny().fit(X, y)
    before = net.state_dict()
    assert _bytes(net.set_device("auto").state_dict()) == _bytes(before)  # cpu here
    assert "device" not in net.get_params()


# -- determinism and checkpoints ----------------------------------------------------
@pytest.mark.parametrize("make", [tiny, small_mlp], ids=["cnn", "mlp"])
def test_same_seed_gives_identical_weights(make):
    X, y = halves(24)
    a = make().fit(X, y).state_dict()
    assert _bytes(a) == _bytes(make().fit(X, y).state_dict())
    assert any(k.startswith("optim.") for k in a)
    b = make(seed=4).fit(X, y).state_dict()
    assert a["dense0.weight"].tobytes() != b["dense0.weight"].tobytes()


@pytest.mark.parametrize(
    "make",
    [tiny, lambda: tiny(optimizer="momentum", lr_decay_every=3), small_mlp],
    ids=["cnn-adam", "cnn-momentum", "mlp"],
)
def test_resume_from_a_stored_checkpoint_continues_bit_identically(make):
    X, y = halves(40)
    batches = [np.arange(i, i + 8) % 40 for i in range(0, 64, 8)]
    straight = make().initialize(X.shape[1:], [0, 1])
    for step, idx in enumerate(batches):
        straight.train_step(X[idx], y[idx], step)

    first = make().initialize(X.shape[1:], [0, 1])
    for step, idx in enumerate(batches[:4]):
        first.train_step(X[idx], y[idx], step)
    # As the database hands it back: real[], flattened.
    stored = {k: v.astype(np.float32).ravel() for k, v in first.state_dict().items()}
    resumed = make().initialize(X.shape[1:], [0, 1]).load_state_dict(stored)
    for step, idx in enumerate(batches[4:], start=4):
        resumed.train_step(X[idx], y[idx], step)
    assert _bytes(resumed.state_dict()) == _bytes(straight.state_dict())


def test_state_dict_holds_every_tensor_with_its_dtype_and_the_optimizer():
    X, y = halves(24)
    net = tiny().fit(X, y)  # 3 steps x 2 epochs
    state = net.state_dict()
    assert set(net.module_.state_dict()) <= set(state)
    assert state["bn0.num_batches_tracked"].dtype == np.int64
    assert int(state["bn0.num_batches_tracked"]) == 6
    assert state["conv0.weight"].shape == (4, 1, 3, 3) and state["conv0.weight"].flags.c_contiguous
    assert not np.array_equal(state["bn0.running_var"], np.ones(4, np.float32))
    for name, _ in net.module_.named_parameters():
        for slot in ("exp_avg", "exp_avg_sq", "step"):
            assert f"optim.{name}.{slot}" in state
    assert float(state["optim.conv0.weight.step"]) == 6.0
    # A snapshot, not a view: training on does not rewrite it.
    copy = {k: v.copy() for k, v in state.items()}
    net.train_step(X[:8], y[:8], 6)
    assert _bytes(state) == _bytes(copy)


def test_stored_weights_rebuild_the_same_predictor():
    X, y = halves(24)
    net = tiny().fit(X, y)
    stored = {
        k: v.astype(np.float32).ravel()
        for k, v in net.state_dict().items()
        if not k.startswith("optim.")
    }
    rebuilt = tiny().initialize(X.shape[1:], [0, 1]).load_state_dict(stored)
    assert net.predict_proba(X).tobytes() == rebuilt.predict_proba(X).tobytes()
    assert int(rebuilt.state_dict()["bn0.num_batches_tracked"]) == 6
    assert not any(k.startswith("optim.") for k in rebuilt.state_dict())


def test_bad_checkpoints_are_refused():
    X, y = halves(16)
    state = tiny().fit(X, y).state_dict()
    fresh = tiny().initialize(X.shape[1:], [0, 1])
    with pytest.raises(InvalidArgument, match="lack tensor 'bn1.running_var'"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "bn1.running_var"})
    with pytest.raises(InvalidArgument, match="'conv0.weight' has 35 values"):
        fresh.load_state_dict({**state, "conv0.weight": np.zeros(35, np.float32)})
    with pytest.raises(InvalidArgument, match="names no parameter"):
        fresh.load_state_dict({**state, "optim.conv9.weight.step": np.zeros(1)})
    numpy_style = {k: v for k, v in state.items() if not k.startswith("optim.dense1.bias")}
    numpy_style["optim.dense1.bias.m"] = np.zeros(2, np.float32)
    with pytest.raises(InvalidArgument, match="another engine or optimizer"):
        fresh.load_state_dict(numpy_style)


# -- same network as numpy ----------------------------------------------------------
@pytest.mark.parametrize(
    ("layers", "batch_norm", "shape"),
    [
        (DEFAULT_LAYERS, True, (64, 64, 1)),
        (TINY, True, (12, 12, 3)),
        ("conv8k5-gap-dense16-dense8", True, (9, 7, 2)),
        ("conv4-pool-dense8", False, (8, 8, 1)),
    ],
)
def test_parameter_count_matches_numpy(layers, batch_norm, shape):
    kw = {"layers": layers, "batch_norm": batch_norm}
    a = ConvNet(**kw).initialize(shape, list(range(10)))
    b = TorchConvNet(**kw).initialize(shape, list(range(10)))
    assert _n_params(b) == _n_params(a)
    bn_tensors = {k for k in a.params_ if k.startswith("bn")}
    assert bn_tensors <= set(b.state_dict())


def test_mlp_parameter_count_matches_numpy():
    a = MLPClassifier(hidden=(30, 20)).initialize((8, 8, 1), [0, 1, 2])
    b = TorchMLP(hidden=(30, 20)).initialize((8, 8, 1), [0, 1, 2])
    assert _n_params(b) == _n_params(a) == 64 * 30 + 30 + 30 * 20 + 20 + 20 * 3 + 3


@pytest.mark.parametrize(
    ("layers", "batch_norm"),
    [(TINY, True), ("conv3k5-gap-dense4", True), ("conv3-pool-dense4", False)],
)
def test_one_step_matches_numpy(layers, batch_norm):
    """Same initial weights, then one SGD step: same cost, weights and (biased) BN statistics."""
    kw = {"layers": layers, "batch_norm": batch_norm, "augment": False, "dropout": 0.0}
    kw |= {"optimizer": "sgd", "lr": 0.1, "l2": 0.01, "lr_schedule": None}
    rng = np.random.default_rng(0)
    X, y = rng.random((16, 8, 8, 2), dtype=np.float32), rng.integers(0, 3, 16)
    a = ConvNet(**kw).initialize((8, 8, 2), [0, 1, 2])
    b = TorchConvNet(**kw).initialize((8, 8, 2), [0, 1, 2])
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-6)
    ra, rb = a.train_step(X, y, 0), b.train_step(X, y, 0)
    assert rb.cost == pytest.approx(ra.cost, rel=1e-6) and rb.correct == ra.correct
    state = b.state_dict()
    for key, value in a.params_.items():
        got = (
            state[key].transpose(0, 2, 3, 1)
            if key.startswith("conv") and value.ndim == 4
            else state[key]
        )
        np.testing.assert_allclose(got, value, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-6)


def test_mlp_matches_numpy_over_a_few_momentum_steps():
    kw = {"hidden": (6, 5), "optimizer": "momentum", "lr": 0.05, "lr_schedule": "step"}
    kw |= {"lr_decay_every": 2}
    rng = np.random.default_rng(1)
    X, y = rng.random((16, 4, 4, 2), dtype=np.float32), rng.integers(0, 3, 16)
    a = MLPClassifier(**kw).initialize(X.shape[1:], [0, 1, 2])
    b = TorchMLP(**kw).initialize(X.shape[1:], [0, 1, 2])
    for step in range(4):
        assert b.train_step(X, y, step).cost == pytest.approx(
            a.train_step(X, y, step).cost, rel=1e-5
        )
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-5)


def test_l2_adds_to_the_cnn_cost_like_numpy():
    X, y = halves(16)
    plain = tiny(augment=False, dropout=0.0, l2=0.0).initialize(X.shape[1:], [0, 1])
    decayed = tiny(augment=False, dropout=0.0, l2=0.5).initialize(X.shape[1:], [0, 1])
    reference = ConvNet(layers=TINY, seed=3, l2=0.5).initialize(X.shape[1:], [0, 1])
    weights = [v for k, v in reference.params_.items() if k.endswith(".weight") and v.ndim > 1]
    expected = 0.25 * sum(float(np.vdot(w, w)) for w in weights)
    gap = decayed.train_step(X, y, 0).cost - plain.train_step(X, y, 0).cost
    assert gap == pytest.approx(expected, rel=1e-4)


# -- learning and prediction --------------------------------------------------------
@pytest.mark.parametrize("cls", [ConvNet, TorchConvNet])
def test_both_engines_learn_a_separable_task(cls):
    X, y = halves(240, size=16)
    Xt, yt = halves(100, size=16, seed=1)
    net = cls(layers="conv4-pool-conv8-pool-dense16", iterations=4, batch_size=16, lr=0.01)
    assert (net.fit(X, y).predict(Xt) == yt).mean() >= 0.95


def test_mlp_learns_a_separable_task():
    X, y = halves(120, size=6)
    Xt, yt = halves(100, size=6, seed=1)
    net = TorchMLP(hidden=(16,), lr=0.01, iterations=10, batch_size=16).fit(X, y)
    assert (net.predict(Xt) == yt).mean() >= 0.95


def test_predict_proba_is_chunked_float32_and_normalised():
    X, y = halves(300)
    net = tiny().fit(X[:16], y[:16])
    proba = net.predict_proba(X)
    assert proba.shape == (300, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(net.predict_proba(X[250:]), proba[250:], rtol=1e-5, atol=1e-7)
    assert net.predict_proba(X[:0]).shape == (0, 2)
    pixels = (X[:5] * 255).astype(np.uint8)
    assert net.predict_proba_pixels(pixels).dtype == np.float64
    with pytest.raises(InvalidArgument, match="does not match the model's"):
        net.predict_proba(X[:, :8])


def test_predict_before_initialize_is_refused():
    with pytest.raises(InvalidArgument, match="not initialized"):
        tiny().predict_proba(np.zeros((1, 8, 8, 1), np.float32))


# -- validation ---------------------------------------------------------------------
def test_pooling_below_1x1_is_refused():
    with pytest.raises(InvalidArgument, match="fewer 'pool'"):
        TorchConvNet(layers="conv4-pool-pool-pool").initialize((4, 4, 1), [0, 1])


@pytest.mark.parametrize(
    ("numpy_cls", "torch_cls", "kw"),
    [
        (ConvNet, TorchConvNet, {"dropout": 1.0}),
        (ConvNet, TorchConvNet, {"l2": -1}),
        (ConvNet, TorchConvNet, {"optimizer": "x"}),
        (ConvNet, TorchConvNet, {"augment": "false"}),
        (ConvNet, TorchConvNet, {"lr_schedule": "linear"}),
        (ConvNet, TorchConvNet, {"lr_schedule": "step", "lr_decay_every": 0}),
        (ConvNet, TorchConvNet, {"layers": "conv8k4"}),
        (ConvNet, TorchConvNet, {"lr": 0}),
        (MLPClassifier, TorchMLP, {"hidden": ()}),
        (MLPClassifier, TorchMLP, {"momentum": 1.5, "optimizer": "momentum"}),
        (MLPClassifier, TorchMLP, {"standardize": 1}),
    ],
)
def test_bad_hyperparameters_give_the_numpy_error(numpy_cls, torch_cls, kw):
    with pytest.raises(InvalidArgument) as expected:
        numpy_cls(**kw).initialize((8, 8, 1), [0, 1])
    with pytest.raises(InvalidArgument) as got:
        torch_cls(**kw).initialize((8, 8, 1), [0, 1])
    assert str(got.value) == str(expected.value)
