"""Binary logistic regression, exactly as the seed notebook trains it."""

from __future__ import annotations

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.base import DTYPE, Classifier, StepResult, pixels_to_float64
from signdb.ml.losses import binary_cross_entropy, sigmoid
from signdb.ml.optim import SGD

F32 = np.float32
#: The seed initialises every weight to this constant (and the bias to 0).
INIT_WEIGHT = 0.01


class LogisticRegression(Classifier):
    """The seed's binary logistic regression, trained by full-batch gradient descent.

    Every weight starts at 0.01 and the bias at 0. One step on the whole
    training set ``X`` (flattened row-major, ``h, w, c`` order, values in
    [0, 1]) computes ``z = X w + b``, ``a = sigmoid(z)``, the mean binary
    cross-entropy, ``dw = X^T (a - y) / n`` and ``db = mean(a - y)``, then
    ``w -= lr * dw`` and ``b -= lr * db``. The positive class is
    ``classes_[1]``; tensors are ``"weight"`` (d,) and ``"bias"`` (1,).

    Parameters
    ----------
    lr:
        Learning rate of plain gradient descent.
    iterations:
        Number of full-batch gradient steps.
    batch_size:
        Ignored: the seed's algorithm always uses the whole training set.
    seed:
        Stored for the record; nothing in this model is random.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((4, 2, 2, 1), dtype=np.float32)
    >>> X[2:] = 1.0
    >>> model = LogisticRegression(lr=1.0, iterations=50).fit(X, np.array([3, 3, 7, 7]))
    >>> model.predict(X)
    array([3, 3, 7, 7])
    >>> model.predict_proba(X[:1]).round(3)
    array([[0.938, 0.062]], dtype=float32)
    >>> sorted((k, v.shape) for k, v in model.state_dict().items())
    [('bias', (1,)), ('weight', (4,))]
    """

    name = "logreg"
    full_batch = True

    def __init__(
        self,
        *,
        lr: float = 0.01,
        iterations: int = 150,
        batch_size: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(lr=lr, iterations=iterations, batch_size=batch_size, seed=seed)

    def _init_params(self, input_shape: tuple[int, ...], n_classes: int) -> dict[str, np.ndarray]:
        if n_classes != 2:
            raise InvalidArgument(
                f"logreg is a binary classifier and needs exactly 2 classes, got {n_classes} "
                f"({list(self.classes_)}); pass e.g. --classes 0,1 or use --model softmax"
            )
        d = int(np.prod(input_shape))
        self.optimizer_ = SGD(self.lr)
        return {
            "weight": np.full(d, INIT_WEIGHT, dtype=DTYPE),
            "bias": np.zeros(1, dtype=DTYPE),
        }

    def _logits(self, X: np.ndarray) -> np.ndarray:
        if tuple(X.shape[1:]) != self.input_shape_:
            raise InvalidArgument(
                f"input shape {tuple(X.shape[1:])} does not match the model's "
                f"{self.input_shape_}; preprocess images to the training size"
            )
        flat = X.reshape(len(X), -1)
        return flat @ self.params_["weight"] + self.params_["bias"]

    def _step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        z = self._logits(X)
        correct = int(np.count_nonzero((z >= 0) == (y == 1)))
        target = y.astype(F32)
        cost = binary_cross_entropy(z, target)
        residual = sigmoid(z) - target
        flat = X.reshape(len(X), -1)
        grads = {
            "weight": (flat.T @ residual) / F32(len(X)),
            "bias": np.mean(residual, dtype=F32, keepdims=True),
        }
        self.optimizer_.update(self.params_, grads, self.opt_state_, step)
        return StepResult(float(cost), correct)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        z = self._logits(X)
        # sigmoid(-z) rather than 1 - p keeps the negative column accurate near p = 1.
        return np.stack([sigmoid(-z), sigmoid(z)], axis=1)

    def predict_proba_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Double-precision probabilities from the float32 weights, as SQL computes them.

        ``signdb.predict_proba`` sums the 4096-term dot product in double
        precision; the float32 forward pass drifts from it by about 1e-6, which
        would break the promise that the stored and the SQL probability agree.
        """
        x = pixels_to_float64(pixels, self.input_shape_)
        z = x @ self.params_["weight"].astype(np.float64) + float(self.params_["bias"][0])
        e = np.exp(-np.abs(z))  # the stable sigmoid: exp never sees a positive argument
        p = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return np.stack([1.0 - p, p], axis=1)
