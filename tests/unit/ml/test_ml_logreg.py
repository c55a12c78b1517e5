"""LogisticRegression reproduces the seed's algorithm step for step."""

from __future__ import annotations

import numpy as np
import pytest

from signdb.errors import InvalidArgument
from signdb.ml.logreg import LogisticRegression


def tiny_dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.random((12, 3, 2, 2), dtype=np.float32)  # (n, h, w, c)
    labels = np.array([4, 9] * 6)
    X[labels == 9, 0] += 0.5
    return X, labels


def seed_reference(X: np.ndarray, y: np.ndarray, lr: float, steps: int):
    """The seed notebook's formulas: x is (d, n), w is (d, 1), float32 throughout."""
    x = X.reshape(len(X), -1).T
    w = np.full((x.shape[0], 1), 0.01, dtype=np.float32)
    b = np.float32(0.0)
    history = []
    for _ in range(steps):
        z = np.dot(w.T, x) + b
        y_head = 1 / (1 + np.exp(-z))
        loss = -y * np.log(y_head) - (1 - y) * np.log(1 - y_head)
        cost = np.sum(loss) / x.shape[1]
        dw = np.dot(x, (y_head - y).T) / x.shape[1]
        db = np.sum(y_head - y) / x.shape[1]
        w = w - np.float32(lr) * dw
        b = b - np.float32(lr) * db
        history.append((float(cost), w[:, 0].copy(), float(b)))
    return history


def test_matches_seed_formulas_step_for_step() -> None:
    X, labels = tiny_dataset()
    y = (labels == 9).astype(np.float32)
    model = LogisticRegression(lr=0.5).initialize(X.shape[1:], [4, 9])
    np.testing.assert_array_equal(model.params_["weight"], np.full(12, 0.01, np.float32))
    assert model.params_["bias"].tolist() == [0.0]
    for step, (cost, w, b) in enumerate(seed_reference(X, y, 0.5, 20)):
        got = model.train_step(X, (labels == 9).astype(int), step).cost
        assert got == pytest.approx(cost, rel=1e-5), step
        np.testing.assert_allclose(model.params_["weight"], w, rtol=1e-5, atol=1e-7)
        assert model.params_["bias"][0] == pytest.approx(b, rel=1e-5, abs=1e-7)
    assert all(v.dtype == np.float32 for v in model.state_dict().values())


def test_fit_runs_iterations_full_batch_steps() -> None:
    X, labels = tiny_dataset()
    y = (labels == 9).astype(np.float32)
    model = LogisticRegression(lr=0.5, iterations=7, batch_size=3).fit(X, labels)
    _, w, b = seed_reference(X, y, 0.5, 7)[-1]
    np.testing.assert_allclose(model.params_["weight"], w, rtol=1e-5, atol=1e-7)
    assert list(model.batches(len(X), 0))[0].tolist() == list(range(len(X)))


def test_predict_proba_columns_and_positive_class() -> None:
    X, labels = tiny_dataset()
    model = LogisticRegression(lr=1.0, iterations=200).fit(X, labels)
    proba = model.predict_proba(X)
    assert proba.shape == (12, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    z = X.reshape(12, -1) @ model.params_["weight"] + model.params_["bias"]
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-5)
    assert model.predict(X).tolist() == labels.tolist()


def test_refuses_more_than_two_classes() -> None:
    with pytest.raises(InvalidArgument, match=r"exactly 2 classes, got 3.*--model softmax"):
        LogisticRegression().initialize((2, 2, 1), [0, 1, 2])


def test_refuses_wrong_input_shape() -> None:
    model = LogisticRegression().initialize((2, 2, 1), [0, 1])
    with pytest.raises(InvalidArgument, match=r"input shape \(3, 3, 1\)"):
        model.predict_proba(np.zeros((1, 3, 3, 1)))
