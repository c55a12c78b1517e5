"""Optimizers that keep every piece of their state in a caller-owned dict.

A model passes its ``opt_state_`` dict to :meth:`Optimizer.update`; momentum
buffers and Adam moments live there under ``"<param>.<slot>"`` keys, so
:meth:`signdb.ml.base.Classifier.state_dict` checkpoints them and a resumed run
continues bit-identically. The step count is always passed in (never counted
here) for the same reason.

Updates are in place and float32 end to end: hyperparameters are cast to
float32 before they touch an array, so numpy never promotes to float64.

Examples
--------
>>> import numpy as np
>>> opt = make_optimizer("sgd", 0.5)
>>> params = {"w": np.array([1.0, 2.0], dtype=np.float32)}
>>> opt.update(params, {"w": np.array([1.0, -1.0], dtype=np.float32)}, {}, step=0)
>>> params["w"]
array([0.5, 2.5], dtype=float32)
>>> make_optimizer("adam", 0.1, lr_schedule="step", lr_decay_every=10).lr_at(25)
0.025
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from signdb.errors import InvalidArgument

F32 = np.float32
SCHEDULES = (None, "step", "cosine")


class Optimizer:
    """Base optimizer: learning-rate schedule plus the per-tensor update loop.

    ``lr_schedule``:
      * ``None``: constant ``lr``.
      * ``"step"``: ``lr * lr_decay ** (step // lr_decay_every)``.
      * ``"cosine"``: ``lr * (1 + cos(pi * min(step, total_steps) / total_steps)) / 2``.
        With ``total_steps=None`` the horizon is the run's own length, which the
        trainer passes to :meth:`plan` before the first step.
    """

    def __init__(
        self,
        lr: float,
        *,
        lr_schedule: str | None = None,
        lr_decay: float = 0.5,
        lr_decay_every: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise InvalidArgument(f"learning rate must be > 0, got {lr!r}; pass e.g. --lr 0.01")
        if lr_schedule not in SCHEDULES:
            raise InvalidArgument(
                f"unknown learning-rate schedule {lr_schedule!r}; choose one of "
                "None, 'step', 'cosine'"
            )
        if lr_schedule == "step":
            if not (isinstance(lr_decay_every, int) and lr_decay_every >= 1):
                raise InvalidArgument(
                    f"lr_decay_every must be a positive integer for the 'step' schedule, "
                    f"got {lr_decay_every!r}"
                )
            if not (isinstance(lr_decay, (int, float)) and 0 < lr_decay <= 1):
                raise InvalidArgument(f"lr_decay must be in (0, 1], got {lr_decay!r}")
        if lr_schedule == "cosine" and not (
            total_steps is None or (isinstance(total_steps, int) and total_steps >= 1)
        ):
            raise InvalidArgument(
                f"total_steps must be a positive integer for the 'cosine' schedule, or None "
                f"for the whole run; got {total_steps!r}"
            )
        self.lr = float(lr)
        self.lr_schedule = lr_schedule
        self.lr_decay = float(lr_decay)
        self.lr_decay_every = lr_decay_every
        self.total_steps = total_steps
        self._open = total_steps is None  # plan() sets the horizon

    def plan(self, total_steps: int) -> None:
        """Anneal a ``"cosine"`` schedule left open (``total_steps=None``) over ``total_steps``.

        >>> opt = make_optimizer("adam", 1.0, lr_schedule="cosine")
        >>> opt.plan(10)
        >>> round(opt.lr_at(5), 6), opt.lr_at(10)
        (0.5, 0.0)
        """
        if self._open:
            self.total_steps = max(1, int(total_steps))

    def lr_at(self, step: int) -> float:
        """Learning rate for the 0-based ``step``."""
        if self.lr_schedule == "step":
            assert self.lr_decay_every is not None
            return self.lr * self.lr_decay ** (int(step) // self.lr_decay_every)
        if self.lr_schedule == "cosine":
            if self.total_steps is None:
                raise InvalidArgument(
                    "the 'cosine' schedule has no horizon: pass total_steps, or train through "
                    "fit() or the trainer, which call plan() with the run's step count"
                )
            frac = min(int(step), self.total_steps) / self.total_steps
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
        return self.lr

    def update(
        self,
        params: dict[str, np.ndarray],
        grads: dict[str, np.ndarray],
        state: dict[str, np.ndarray],
        step: int,
    ) -> None:
        """Apply one update to every tensor named in ``grads``, in place."""
        lr = F32(self.lr_at(step))
        for key, grad in grads.items():
            self._update_one(key, params[key], np.asarray(grad, dtype=F32), state, lr, int(step))

    def _update_one(
        self,
        key: str,
        param: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        lr: np.float32,
        step: int,
    ) -> None:
        raise NotImplementedError

    @staticmethod
    def _slot(state: dict[str, np.ndarray], key: str, like: np.ndarray) -> np.ndarray:
        # Created lazily so a fresh model's state_dict holds no all-zero buffers.
        buf = state.get(key)
        if buf is None:
            buf = state[key] = np.zeros(like.shape, dtype=F32)
        elif buf.shape != like.shape:
            # A checkpoint read back from real[] may be flat; its size still has to match.
            if buf.size != like.size:
                raise InvalidArgument(
                    f"optimizer state {key!r} has shape {buf.shape}, expected {like.shape}; "
                    "the checkpoint belongs to a different model"
                )
            buf = state[key] = np.ascontiguousarray(buf, dtype=F32).reshape(like.shape)
        return buf


class SGD(Optimizer):
    """Gradient descent; with ``momentum > 0`` the heavy-ball form ``v = mu*v + g``.

    ``momentum=0`` is exactly the seed's plain update ``p -= lr * g`` and keeps
    no state.
    """

    def __init__(self, lr: float, *, momentum: float = 0.0, **kw: Any) -> None:
        super().__init__(lr, **kw)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise InvalidArgument(f"momentum must be a number in [0, 1), got {momentum!r}")
        if not 0.0 <= momentum < 1.0:
            raise InvalidArgument(f"momentum must be in [0, 1), got {momentum!r}; try 0.9")
        self.momentum = float(momentum)

    def _update_one(self, key, param, grad, state, lr, step):  # type: ignore[no-untyped-def]
        if self.momentum == 0.0:
            param -= lr * grad
            return
        v = self._slot(state, f"{key}.v", param)
        v *= F32(self.momentum)
        v += grad
        param -= lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction from the 0-based ``step``."""

    def __init__(
        self,
        lr: float,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        **kw: Any,
    ) -> None:
        super().__init__(lr, **kw)
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise InvalidArgument(f"{name} must be in [0, 1), got {value!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise InvalidArgument(f"eps must be > 0, got {eps!r}")
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)

    def _update_one(self, key, param, grad, state, lr, step):  # type: ignore[no-untyped-def]
        m = self._slot(state, f"{key}.m", param)
        v = self._slot(state, f"{key}.v", param)
        b1, b2 = F32(self.beta1), F32(self.beta2)
        m *= b1
        m += (F32(1) - b1) * grad
        v *= b2
        v += (F32(1) - b2) * (grad * grad)
        t = step + 1
        corr1 = F32(1.0 - self.beta1**t)
        corr2 = F32(1.0 - self.beta2**t)
        m_hat = m / corr1
        v_hat = v / corr2
        param -= lr * m_hat / (np.sqrt(v_hat) + F32(self.eps))


OPTIMIZERS = ("sgd", "momentum", "adam")


def make_optimizer(name: str, lr: float, **kw: Any) -> Optimizer:
    """Build an optimizer by name: ``"sgd"``, ``"momentum"`` (SGD, momentum 0.9) or ``"adam"``."""
    if name == "sgd":
        cls: type[Optimizer] = SGD
    elif name == "momentum":
        cls = SGD
        kw.setdefault("momentum", 0.9)
    elif name == "adam":
        cls = Adam
    else:
        raise InvalidArgument(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    accepted = _keywords(cls) | _keywords(Optimizer)
    unknown = sorted(set(kw) - accepted)
    if unknown:
        raise InvalidArgument(
            f"optimizer {name!r} does not accept {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    return cls(lr, **kw)


def _keywords(cls: type[Optimizer]) -> set[str]:
    sig = inspect.signature(cls.__init__)
    return {p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


def check_l2(l2: float) -> float:
    """Validate an L2 (weight decay) coefficient: a number >= 0."""
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
        raise InvalidArgument(f"l2 must be a number >= 0, got {l2!r}; pass e.g. 0.0001 or 0")
    return float(l2)


def optimizer_from_hyperparams(
    optimizer: str,
    lr: float,
    *,
    momentum: float,
    lr_schedule: str | None,
    lr_decay: float,
    lr_decay_every: int | None,
    total_steps: int | None,
) -> Optimizer:
    """The optimizer a model's flat hyperparameters describe (momentum only for "momentum")."""
    kw: dict[str, Any] = {
        "lr_schedule": lr_schedule,
        "lr_decay": lr_decay,
        "lr_decay_every": lr_decay_every,
        "total_steps": total_steps,
    }
    if optimizer == "momentum":
        kw["momentum"] = momentum
    return make_optimizer(optimizer, lr, **kw)
