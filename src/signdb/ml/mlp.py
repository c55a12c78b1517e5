"""Multi-layer perceptron: ReLU hidden layers and a softmax output."""

from __future__ import annotations

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.augment import random_affine
from signdb.ml.base import DTYPE, Classifier, StepResult, step_rng
from signdb.ml.losses import softmax, softmax_cross_entropy, standardize_per_image
from signdb.ml.optim import check_l2, optimizer_from_hyperparams

F32 = np.float32
#: ``step_rng`` stream of layer ``i``'s initial weights is ``INIT_STREAM + i``;
#: kept clear of stream 1, which :func:`signdb.ml.base.batch_order` uses.
INIT_STREAM = 100


class MLPClassifier(Classifier):
    """Fully connected network trained with mini-batches.

    Layers ``dense0 … dense{L}`` (``L = len(hidden)``): each hidden layer is
    ``relu(h W + b)``, the last produces logits for a softmax. Weights are He
    initialised (normal, std ``sqrt(2 / fan_in)``) from
    ``step_rng(seed, 0, stream=100 + layer)``, biases start at 0. The cost is
    the mean cross-entropy of the batch; ``l2`` is added to the weight
    gradients (not the biases) and not reported in the cost. Tensors:
    ``"dense{i}.weight"`` (fan_in, fan_out) and ``"dense{i}.bias"`` (fan_out,).

    Parameters
    ----------
    hidden:
        Sizes of the hidden layers, e.g. ``(128,)`` or ``(256, 64)``.
    lr, iterations, batch_size, seed:
        As in :class:`signdb.ml.base.Classifier`; ``iterations`` counts epochs.
    optimizer:
        ``"adam"`` (default), ``"momentum"`` or ``"sgd"``.
    momentum:
        Momentum coefficient, used only with ``optimizer="momentum"``.
    l2:
        Weight decay coefficient applied to the weights (not the biases).
    lr_schedule, lr_decay, lr_decay_every, total_steps:
        Optional learning-rate schedule, in steps (see :mod:`signdb.ml.optim`).
    standardize:
        Shift and scale every image to mean 0, standard deviation 1 before the
        first layer (:func:`signdb.ml.losses.standardize_per_image`).
    augment:
        Randomly shift, rotate and zoom every training batch before it is
        flattened (:func:`signdb.ml.augment.random_affine`). With it, 256
        hidden units and 50 epochs, all ten digits reach 0.92 test accuracy
        on split seeds 42 and 1 with a 0.15 val split (0.844 with 128 units,
        30 epochs and no augmentation, before).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 2, 2, 1), dtype=np.float32)
    >>> labels = (X[:, 0, 0, 0] > X[:, 1, 1, 0]).astype(int)
    >>> model = MLPClassifier(hidden=(8,), lr=0.05, iterations=100, batch_size=10)
    >>> float((model.fit(X, labels).predict(X) == labels).mean()) >= 0.9
    True
    >>> sorted(model.params_)
    ['dense0.bias', 'dense0.weight', 'dense1.bias', 'dense1.weight']
    """

    name = "mlp"

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (256,),
        lr: float = 0.001,
        iterations: int = 50,
        batch_size: int | None = 64,
        seed: int = 42,
        optimizer: str = "adam",
        momentum: float = 0.9,
        l2: float = 0.0001,
        lr_schedule: str | None = None,
        lr_decay: float = 0.5,
        lr_decay_every: int | None = None,
        total_steps: int | None = None,
        standardize: bool = True,
        augment: bool = True,
    ) -> None:
        super().__init__(lr=lr, iterations=iterations, batch_size=batch_size, seed=seed)
        self.hidden = hidden
        self.optimizer = optimizer
        self.momentum = momentum
        self.l2 = l2
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.lr_decay_every = lr_decay_every
        self.total_steps = total_steps
        self.standardize = standardize
        self.augment = augment

    def _validate(self) -> None:
        for flag in ("standardize", "augment"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidArgument(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.augment and len(self.input_shape_) != 3:
            raise InvalidArgument(
                f"augment needs images shaped (height, width, channels), got {self.input_shape_}; "
                "pass augment=False"
            )
        hidden = self.hidden
        # A list is accepted because hyperparameters come back from JSON that way.
        if (
            not isinstance(hidden, (tuple, list))
            or not hidden
            or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)
        ):
            raise InvalidArgument(
                f"hidden layer sizes must be a non-empty sequence of positive integers, "
                f"got {hidden!r}; pass e.g. hidden=(128,)"
            )
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

    @property
    def n_layers_(self) -> int:
        """Number of dense layers, output layer included."""
        return len(self.hidden) + 1

    def _init_params(self, input_shape: tuple[int, ...], n_classes: int) -> dict[str, np.ndarray]:
        sizes = [int(np.prod(input_shape)), *(int(h) for h in self.hidden), n_classes]
        params: dict[str, np.ndarray] = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            rng = step_rng(self.seed, 0, stream=INIT_STREAM + i)
            w = rng.standard_normal((fan_in, fan_out), dtype=DTYPE)
            w *= F32(np.sqrt(2.0 / fan_in))
            params[f"dense{i}.weight"] = w
            params[f"dense{i}.bias"] = np.zeros(fan_out, dtype=DTYPE)
        return params

    def _flat(self, X: np.ndarray) -> np.ndarray:
        if tuple(X.shape[1:]) != self.input_shape_:
            raise InvalidArgument(
                f"input shape {tuple(X.shape[1:])} does not match the model's "
                f"{self.input_shape_}; preprocess images to the training size"
            )
        flat = X.reshape(len(X), -1)
        return standardize_per_image(flat) if self.standardize else flat

    def _activations(self, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Inputs of every dense layer (the flattened X first) and the final logits."""
        h = self._flat(X)
        inputs = []
        for i in range(self.n_layers_):
            inputs.append(h)
            h = h @ self.params_[f"dense{i}.weight"] + self.params_[f"dense{i}.bias"]
            if i < self.n_layers_ - 1:
                np.maximum(h, F32(0), out=h)
        return inputs, h

    def _step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        if self.augment:
            X = random_affine(X, self.seed, step)
        inputs, logits = self._activations(X)
        correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        cost, dz = softmax_cross_entropy(logits, y)
        l2 = F32(self.l2)
        grads: dict[str, np.ndarray] = {}
        for i in reversed(range(self.n_layers_)):
            w = self.params_[f"dense{i}.weight"]
            grad_w = inputs[i].T @ dz
            if self.l2:
                grad_w += l2 * w
            grads[f"dense{i}.weight"] = grad_w
            grads[f"dense{i}.bias"] = np.sum(dz, axis=0, dtype=F32)
            if i > 0:
                # inputs[i] = relu(pre-activation), so it is > 0 exactly where relu passed.
                dz = (dz @ w.T) * (inputs[i] > 0)
        self.optimizer_.update(self.params_, grads, self.opt_state_, step)
        return StepResult(float(cost), correct)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return softmax(self._activations(X)[1])
