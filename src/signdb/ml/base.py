"""The contract every signdb model follows.

Models are plain numpy, scikit-learn shaped: ``__init__`` only stores
hyperparameters, validation happens when training starts, learned state ends
in ``_``. They never touch SQL: the trainer (``signdb.training``) feeds them
batches it streamed from PostgreSQL, one :meth:`Classifier.train_step` per
parameter update, and persists :meth:`Classifier.state_dict` as ``real[]``.

Everything is float32 so that a checkpoint stored as ``real[]`` and loaded
back continues *bit-identically*: that is what makes ``--resume`` exact.
Randomness is derived from ``(seed, step)`` only, never from hidden RNG state,
so a resumed run draws the same numbers an uninterrupted one would.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from signdb.errors import InvalidArgument

DTYPE = np.float32


def pixels_to_float(pixels: np.ndarray) -> np.ndarray:
    """Stored uint8 pixels -> float32 in [0, 1]: the one conversion every path uses."""
    return pixels.astype(DTYPE) / DTYPE(255.0)


def pixels_to_float64(pixels: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 (n, h, w, c) -> float64 (n, h*w*c) in [0, 1], checked against the model's shape.

    The input of the double-precision scoring that linear models share with SQL.
    """
    if tuple(pixels.shape[1:]) != tuple(input_shape):
        raise InvalidArgument(
            f"input shape {tuple(pixels.shape[1:])} does not match the model's "
            f"{tuple(input_shape)}; preprocess images to the training size"
        )
    return pixels.reshape(len(pixels), -1).astype(np.float64) / 255.0


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one parameter update reports: the batch cost before the update, and
    how many of the batch's images the model got right on the same forward pass
    (None when the model cannot tell without a second pass)."""

    cost: float
    correct: int | None = None


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, step, stream)."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


def batch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Deterministic permutation of ``range(n)`` for one epoch (in-memory ``fit``)."""
    return step_rng(seed, epoch, stream=1).permutation(n)


class Classifier:
    """Base class: subclasses implement the ``_``-prefixed hooks.

    Subclass hooks:
      * ``_validate()``: raise :class:`InvalidArgument` for bad hyperparameters.
      * ``_init_params(input_shape, n_classes)`` -> dict of float32 tensors.
      * ``_step(X, y, step)`` -> :class:`StepResult`; updates ``self.params_``
        (and optimizer state in ``self.opt_state_``) in place.
      * ``_forward(X)`` -> (n, n_classes) probabilities.

    ``X`` is float32 of shape ``(n, h, w, c)`` with values in [0, 1];
    ``y`` is an int array of class *indices* into ``classes_``.
    """

    name: ClassVar[str] = ""
    #: True when one step consumes the whole training set (seed's full-batch GD).
    full_batch: ClassVar[bool] = False

    def __init__(
        self,
        *,
        lr: float = 0.01,
        iterations: int = 150,
        batch_size: int | None = None,
        seed: int = 42,
    ) -> None:
        self.lr = lr
        self.iterations = iterations
        self.batch_size = batch_size
        self.seed = seed

    # -- public API ---------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's keyword arguments, sorted: scikit-learn's ``_get_param_names``.

        The one source of a model's hyperparameter list: ``get_params``, the
        registry's validation and the CLI all read it.
        """
        params = inspect.signature(cls.__init__).parameters.values()
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise TypeError(f"{cls.__name__}.__init__ must list its hyperparameters explicitly")
        return sorted(p.name for p in params if p.name != "self")

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as stored in ``runs.hyperparams``."""
        return {name: getattr(self, name) for name in self.param_names()}

    def initialize(self, input_shape: Sequence[int], classes: Sequence[int]) -> Classifier:
        """Validate hyperparameters and create fresh parameters."""
        if len(classes) < 2:
            raise InvalidArgument(f"need at least 2 classes, got {list(classes)}")
        # Known before validation: a model may fit its architecture to the input.
        self.classes_ = np.asarray(list(classes))
        self.input_shape_ = tuple(int(d) for d in input_shape)
        self._validate_common()
        self._validate()
        self.params_ = {
            k: np.ascontiguousarray(v, dtype=DTYPE)
            for k, v in self._init_params(self.input_shape_, len(self.classes_)).items()
        }
        self.opt_state_: dict[str, np.ndarray] = {}
        return self

    def plan(self, total_steps: int) -> None:
        """Hear the run's length before its first step; ``fit`` and the trainer call it.

        A ``"cosine"`` schedule without its own ``total_steps`` anneals over it.
        """
        optimizer = getattr(self, "optimizer_", None)
        if optimizer is not None:
            optimizer.plan(total_steps)

    def train_step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        """One parameter update on a batch: its cost before the update and its correct count."""
        self._check_fitted()
        return self._step(np.asarray(X, dtype=DTYPE), np.asarray(y), int(step))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self._forward(np.asarray(X, dtype=DTYPE))

    def predict_proba_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (n, k) in float64 for stored uint8 ``pixels`` (n, h, w, c).

        What ``predictions`` stores. Models scored in SQL override it to
        compute in double precision, as ``signdb.predict_proba`` does.
        """
        return self.predict_proba(pixels_to_float(pixels)).astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def fit(self, X: np.ndarray, labels: np.ndarray) -> Classifier:
        """In-memory training with the same step loop the database trainer uses."""
        classes = np.unique(labels)
        self.initialize(X.shape[1:], classes)
        y = np.searchsorted(classes, labels)
        self.plan(self.iterations * sum(1 for _ in self.batches(len(X), 0)))
        step = 0
        for epoch in range(self.iterations):
            for idx in self.batches(len(X), epoch):
                self.train_step(X[idx], y[idx], step)
                step += 1
        return self

    def batches(self, n: int, epoch: int) -> Iterator[np.ndarray]:
        """Index arrays for one epoch: everything at once for full-batch models."""
        if self.full_batch or not self.batch_size or self.batch_size >= n:
            yield np.arange(n)
            return
        order = batch_order(n, self.seed, epoch)
        for start in range(0, n, self.batch_size):
            yield order[start : start + self.batch_size]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Model tensors plus optimizer state (keys ``optim.*``), all float32."""
        self._check_fitted()
        # Copies: optimizers update params_ in place, which would rewrite a saved checkpoint.
        out = {k: v.copy() for k, v in self.params_.items()}
        out.update({f"optim.{k}": v.copy() for k, v in self.opt_state_.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> Classifier:
        """Restore tensors saved by :meth:`state_dict` (optimizer state optional)."""
        self._check_fitted()
        for key, cur in self.params_.items():
            if key not in state:
                raise InvalidArgument(f"stored weights lack tensor {key!r}")
            # np.array copies, so two models never share (and update) one buffer.
            arr = np.array(state[key], dtype=DTYPE).reshape(cur.shape)
            self.params_[key] = np.ascontiguousarray(arr)
        self.opt_state_ = {
            k[len("optim.") :]: np.ascontiguousarray(np.array(v, dtype=DTYPE))
            for k, v in state.items()
            if k.startswith("optim.")
        }
        return self

    # -- helpers ------------------------------------------------------------
    def _validate_common(self) -> None:
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise InvalidArgument(f"learning rate must be > 0, got {self.lr}; pass e.g. --lr 0.01")
        if not (isinstance(self.iterations, int) and self.iterations >= 1):
            raise InvalidArgument(
                f"iterations must be >= 1, got {self.iterations}; pass e.g. --iterations 150"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidArgument(f"batch size must be >= 1, got {self.batch_size}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise InvalidArgument(
                f"{type(self).__name__} is not initialized; call fit() or initialize() first"
            )

    def _validate(self) -> None:  # pragma: no cover - hook
        pass

    def _init_params(self, input_shape: tuple[int, ...], n_classes: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        raise NotImplementedError

    def _forward(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError
