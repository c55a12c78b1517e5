"""Multinomial logistic regression (softmax regression)."""

from __future__ import annotations

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.base import DTYPE, Classifier, StepResult, pixels_to_float64
from signdb.ml.losses import (
    STANDARDIZE_EPS,
    softmax,
    softmax_cross_entropy,
    standardize_per_image,
)
from signdb.ml.optim import check_l2, optimizer_from_hyperparams

F32 = np.float32


class SoftmaxRegression(Classifier):
    """Linear softmax classifier for any number of classes.

    Weights and biases start at **zero**: the loss is convex, so no symmetry
    needs breaking, and training involves no randomness except the mini-batch
    order. Logits are ``X w + b`` on inputs flattened row-major; the cost is
    the mean cross-entropy (the L2 penalty is added to the weight gradients,
    not reported in the cost). Tensors: ``"weight"`` (d, k), ``"bias"`` (k,).

    Parameters
    ----------
    lr, iterations, batch_size, seed:
        As in :class:`signdb.ml.base.Classifier`; ``iterations`` counts epochs,
        and ``batch_size=None`` means full-batch gradient descent (which wants
        a larger ``lr``, e.g. 0.1).
    optimizer:
        ``"sgd"``, ``"momentum"`` or ``"adam"``.
    momentum:
        Momentum coefficient, used only with ``optimizer="momentum"``.
    l2:
        Weight decay coefficient applied to the weights (not the biases).
    lr_schedule, lr_decay, lr_decay_every, total_steps:
        Optional learning-rate schedule, in steps (see :mod:`signdb.ml.optim`).
    standardize:
        Shift and scale every image to mean 0, standard deviation 1 before the
        first layer (:func:`signdb.ml.losses.standardize_per_image`).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((6, 1, 3, 1), dtype=np.float32)
    >>> for i in range(6):
    ...     X[i, 0, i // 2] = 1.0
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> model = SoftmaxRegression(lr=1.0, iterations=100, batch_size=None).fit(X, labels)
    >>> model.predict(X)
    array([0, 0, 1, 1, 2, 2])
    >>> model.params_["weight"].shape, model.params_["bias"].shape
    ((3, 3), (3,))
    """

    name = "softmax"

    def __init__(
        self,
        *,
        lr: float = 0.01,
        iterations: int = 50,
        batch_size: int | None = 64,
        seed: int = 42,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        l2: float = 0.0,
        lr_schedule: str | None = None,
        lr_decay: float = 0.5,
        lr_decay_every: int | None = None,
        total_steps: int | None = None,
        standardize: bool = True,
    ) -> None:
        super().__init__(lr=lr, iterations=iterations, batch_size=batch_size, seed=seed)
        self.optimizer = optimizer
        self.momentum = momentum
        self.l2 = l2
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.lr_decay_every = lr_decay_every
        self.total_steps = total_steps
        self.standardize = standardize

    def _validate(self) -> None:
        if not isinstance(self.standardize, bool):
            raise InvalidArgument(f"standardize must be true or false, got {self.standardize!r}")
        check_l2(self.l2)
        self.optimizer_ = optimizer_from_hyperparams(
            self.optimizer,
            self.lr,
            momentum=self.momentum,
            lr_schedule=self.lr_schedule,
            lr_decay=self.lr_decay,
            lr_decay_every=self.lr_decay_every,
            total_steps=self.total_steps,
        )

    def _init_params(self, input_shape: tuple[int, ...], n_classes: int) -> dict[str, np.ndarray]:
        d = int(np.prod(input_shape))
        return {
            "weight": np.zeros((d, n_classes), dtype=DTYPE),
            "bias": np.zeros(n_classes, dtype=DTYPE),
        }

    def _flat(self, X: np.ndarray) -> np.ndarray:
        if tuple(X.shape[1:]) != self.input_shape_:
            raise InvalidArgument(
                f"input shape {tuple(X.shape[1:])} does not match the model's "
                f"{self.input_shape_}; preprocess images to the training size"
            )
        flat = X.reshape(len(X), -1)
        return standardize_per_image(flat) if self.standardize else flat

    def _step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        flat = self._flat(X)
        w = self.params_["weight"]
        logits = flat @ w + self.params_["bias"]
        correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        cost, dz = softmax_cross_entropy(logits, y)
        grad_w = flat.T @ dz
        if self.l2:
            grad_w += F32(self.l2) * w
        grads = {"weight": grad_w, "bias": np.sum(dz, axis=0, dtype=F32)}
        self.optimizer_.update(self.params_, grads, self.opt_state_, step)
        return StepResult(float(cost), correct)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return softmax(self._flat(X) @ self.params_["weight"] + self.params_["bias"])

    def predict_proba_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Double-precision probabilities, as ``signdb.predict_proba`` computes them in SQL."""
        x = pixels_to_float64(pixels, self.input_shape_)
        if self.standardize:
            x = x - x.mean(axis=1, keepdims=True)
            x = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + STANDARDIZE_EPS)
        z = x @ self.params_["weight"].astype(np.float64) + self.params_["bias"].astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
