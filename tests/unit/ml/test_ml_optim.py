"""Optimizers against hand-written references on a quadratic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signdb.errors import InvalidArgument
from signdb.ml.optim import SGD, Adam, make_optimizer

TARGET = np.array([1.0, -2.0, 3.0], dtype=np.float32)


def quadratic_grad(p: np.ndarray) -> np.ndarray:
    """Gradient of 0.5 * ||p - TARGET||^2 scaled per coordinate."""
    return (p - TARGET) * np.array([1.0, 10.0, 0.1], dtype=np.float32)


def run(opt, steps: int) -> tuple[np.ndarray, dict]:
    params = {"p": np.zeros(3, dtype=np.float32)}
    state: dict[str, np.ndarray] = {}
    for step in range(steps):
        opt.update(params, {"p": quadratic_grad(params["p"])}, state, step)
    return params["p"], state


def test_plain_sgd_is_p_minus_lr_g_and_keeps_no_state() -> None:
    p, state = run(SGD(0.1), 5)
    ref = np.zeros(3, dtype=np.float32)
    for _ in range(5):
        ref = ref - np.float32(0.1) * quadratic_grad(ref)
    np.testing.assert_array_equal(p, ref)
    assert state == {}


def test_momentum_matches_reference() -> None:
    p, state = run(make_optimizer("momentum", 0.05, momentum=0.8), 6)
    ref, v = np.zeros(3), np.zeros(3)
    for _ in range(6):
        v = 0.8 * v + quadratic_grad(ref.astype(np.float32)).astype(np.float64)
        ref = ref - 0.05 * v
    np.testing.assert_allclose(p, ref, rtol=1e-5)
    np.testing.assert_allclose(state["p.v"], v, rtol=1e-5)
    assert p.dtype == np.float32 and state["p.v"].dtype == np.float32


def test_adam_matches_reference_with_bias_correction_from_step() -> None:
    p, state = run(Adam(0.1, beta1=0.9, beta2=0.99, eps=1e-8), 5)
    ref, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    for t in range(1, 6):
        g = quadratic_grad(ref.astype(np.float32)).astype(np.float64)
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        ref = ref - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
    np.testing.assert_allclose(p, ref, rtol=1e-5)
    assert set(state) == {"p.m", "p.v"}
    # First Adam step moves every coordinate by ~lr regardless of gradient scale.
    first, _ = run(Adam(0.1), 1)
    np.testing.assert_allclose(np.abs(first), 0.1, rtol=1e-4)


def test_adam_uses_passed_step_not_a_hidden_counter() -> None:
    a = Adam(0.1)
    params = {"p": np.zeros(3, dtype=np.float32)}
    state: dict[str, np.ndarray] = {}
    a.update(params, {"p": np.ones(3, dtype=np.float32)}, state, step=0)
    fresh = Adam(0.1)
    params2 = {"p": np.zeros(3, dtype=np.float32)}
    fresh.update(params2, {"p": np.ones(3, dtype=np.float32)}, {}, step=0)
    np.testing.assert_array_equal(params["p"], params2["p"])
    # Same state and step -> same update, whichever instance applies it.
    s1 = {k: v.copy() for k, v in state.items()}
    p1 = {"p": params["p"].copy()}
    a.update(params, {"p": np.ones(3, dtype=np.float32)}, state, step=1)
    Adam(0.1).update(p1, {"p": np.ones(3, dtype=np.float32)}, s1, step=1)
    np.testing.assert_array_equal(params["p"], p1["p"])


def test_step_schedule() -> None:
    opt = make_optimizer("sgd", 0.4, lr_schedule="step", lr_decay=0.5, lr_decay_every=10)
    assert [opt.lr_at(s) for s in (0, 9, 10, 19, 20, 35)] == [0.4, 0.4, 0.2, 0.2, 0.1, 0.05]


def test_cosine_schedule() -> None:
    opt = make_optimizer("adam", 1.0, lr_schedule="cosine", total_steps=100)
    assert opt.lr_at(0) == 1.0
    assert opt.lr_at(50) == pytest.approx(0.5)
    assert opt.lr_at(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert opt.lr_at(100) == pytest.approx(0.0)
    assert opt.lr_at(500) == pytest.approx(0.0)


def test_an_open_cosine_anneals_over_the_planned_run() -> None:
    opt = make_optimizer("adam", 1.0, lr_schedule="cosine")
    with pytest.raises(InvalidArgument, match="no horizon"):
        opt.lr_at(0)
    opt.plan(40)
    assert opt.lr_at(20) == pytest.approx(0.5)
    assert opt.lr_at(40) == pytest.approx(0.0)


def test_plan_leaves_a_fixed_horizon_alone() -> None:
    opt = make_optimizer("adam", 1.0, lr_schedule="cosine", total_steps=100)
    opt.plan(10)
    assert opt.lr_at(50) == pytest.approx(0.5)


def test_fit_plans_the_cosine_over_its_own_steps() -> None:
    from signdb.ml.mlp import MLPClassifier

    rng = np.random.default_rng(0)
    X, y = rng.random((30, 4, 4, 1), dtype=np.float32), rng.integers(0, 2, 30)
    model = MLPClassifier(hidden=(4,), iterations=3, batch_size=10, lr_schedule="cosine")
    model.fit(X, y)
    assert model.optimizer_.total_steps == 9  # 3 epochs x 3 batches


def test_schedule_applies_to_updates() -> None:
    opt = make_optimizer("sgd", 1.0, lr_schedule="step", lr_decay=0.5, lr_decay_every=1)
    params = {"p": np.zeros(1, dtype=np.float32)}
    opt.update(params, {"p": np.ones(1, dtype=np.float32)}, {}, step=2)
    assert params["p"][0] == -0.25


@pytest.mark.parametrize(
    ("args", "kw", "needle"),
    [
        (("rmsprop", 0.1), {}, "'rmsprop'; choose one of sgd, momentum, adam"),
        (("sgd", 0.0), {}, "got 0"),
        (("sgd", -1), {}, "got -1"),
        (("momentum", 0.1), {"momentum": 1.5}, "got 1.5"),
        (("adam", 0.1), {"beta1": 1.0}, "beta1 must be in [0, 1), got 1.0"),
        (("adam", 0.1), {"lr_schedule": "linear"}, "'linear'"),
        (("adam", 0.1), {"lr_schedule": "step"}, "lr_decay_every"),
        (("adam", 0.1), {"lr_schedule": "cosine", "total_steps": 0}, "total_steps"),
        (("adam", 0.1), {"momentum": 0.9}, "does not accept momentum"),
    ],
)
def test_bad_optimizer_arguments(args: tuple, kw: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        make_optimizer(*args, **kw)
    assert needle in str(info.value)
