"""The PyTorch engine of ``--model mlp|cnn``: :class:`TorchMLP` and :class:`TorchConvNet`.

Subclasses of :class:`~signdb.ml.mlp.MLPClassifier` and
:class:`~signdb.ml.cnn.ConvNet` with the same constructor, defaults and
validation (inherited, so they cannot drift apart), the same layers and the
same *initial weights* (the numpy ``_init_params`` draws them, from
``step_rng(seed, 0, stream)``). Where the two libraries differ:

* **Batch norm**: ``eps = 1e-5`` and running statistics ``0.9 * running +
  0.1 * batch`` (torch momentum 0.1) with the *biased* variance, as
  :func:`signdb.ml.layers.batchnorm_forward` does. ``nn.BatchNorm2d`` holds
  the tensors (``num_batches_tracked`` included), but its forward would put
  the unbiased variance in ``running_var``, so :func:`_batch_norm` updates them.
* **L2**: coupled weight decay (``grad += l2 * w``, torch's ``weight_decay``)
  on conv and dense weights only; the CNN's reported cost adds
  ``0.5 * l2 * sum(w**2)`` like ``ConvNet._step``, the MLP's does not.
* **Schedule**: the numpy optimizer's ``lr_at(step)`` sets the rate before
  each update; torch's Adam and momentum SGD compute numpy's updates (Adam's
  bias correction counts updates, numpy's reads ``step``: equal from step 0).
* **Dropout**: inverted, on the input of every fully connected layer, from a
  ``torch.Generator`` seeded by ``(seed, step, 12)``: never the global RNG.
* **Layout**: conv weights are torch's ``(out, in, kh, kw)``; activations are
  flattened in NHWC order, so ``dense0.weight`` means what numpy's does.

Training runs under ``torch.use_deterministic_algorithms(True)``: one seed
gives identical weights, and a reloaded checkpoint continues bit for bit.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 8, 8, 1), dtype=np.float32) * 0.2
    >>> X[:20, :, :4] += 0.8  # class 0: bright left half
    >>> X[20:, :, 4:] += 0.8  # class 1: bright right half
    >>> y = np.repeat([0, 1], 20)
    >>> net = TorchConvNet(layers="conv4-pool-dense8", iterations=10, batch_size=8, augment=False)
    >>> TorchConvNet.param_names() == ConvNet.param_names(), net.set_device("cpu").device
    (True, 'cpu')
    >>> float((net.fit(X, y).predict(X) == y).mean())
    1.0
    >>> state = net.state_dict()
    >>> state["bn0.num_batches_tracked"], state["conv0.weight"].shape  # 5 steps x 10 epochs
    (array(50), (4, 1, 3, 3))
    >>> sorted(k for k in state if k.startswith("optim.dense1.bias"))
    ['optim.dense1.bias.exp_avg', 'optim.dense1.bias.exp_avg_sq', 'optim.dense1.bias.step']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml.augment import random_affine
from signdb.ml.base import DTYPE, Classifier, StepResult
from signdb.ml.cnn import DROPOUT_STREAM, PREDICT_CHUNK, ConvNet
from signdb.ml.losses import STANDARDIZE_EPS
from signdb.ml.mlp import MLPClassifier
from signdb.ml.optim import SGD, Adam
from signdb.ml.torchbase import (  # torch, nn and F are None without the extra
    F,
    deterministic,
    from_stored,
    generator,
    nn,
    require_torch,
    resolve_device,
    to_numpy,
    torch,
)

BN_EPS = 1e-5
#: torch's convention: the weight of the new batch statistic (numpy keeps 0.9 of the old).
BN_MOMENTUM = 0.1
#: Optimizer slots a checkpoint must hold for every parameter it has state for.
ADAM_SLOTS = frozenset({"step", "exp_avg", "exp_avg_sq"})
SGD_SLOTS = frozenset({"momentum_buffer"})


def _batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """numpy's batch norm on NCHW ``x``: biased variance in the running statistics too."""
    if not bn.training:
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
        )
    # The kernel F.batch_norm runs, called for the batch statistics it computes anyway:
    # a separate var_mean over (n, h, w) of channels_last memory was 15x slower.
    out, mean, invstd = torch.native_batch_norm(
        x, bn.weight, bn.bias, None, None, True, 0.0, bn.eps
    )
    with torch.no_grad():
        var = invstd.detach().pow(-2) - bn.eps  # invstd = 1 / sqrt(biased var + eps)
        bn.running_mean.mul_(1 - BN_MOMENTUM).add_(mean.detach(), alpha=BN_MOMENTUM)
        bn.running_var.mul_(1 - BN_MOMENTUM).add_(var, alpha=BN_MOMENTUM)
        bn.num_batches_tracked.add_(1)
    return out


class _TorchEngine(Classifier):
    """Device, training step, prediction and checkpoints of both torch classes.

    Listed before the numpy class in the bases, so the numpy ``__init__`` and
    ``_validate`` stay in charge; subclasses build ``module_`` and its logits.
    """

    engine: ClassVar[str] = "torch"
    #: Whether the reported cost includes the L2 term (ConvNet's does, the MLP's not).
    l2_in_cost: ClassVar[bool] = False
    _device_name: str = "cpu"
    _net: Any = None  # DistributedDataParallel over module_, while training distributed
    _draw: tuple[int, int, int] | None = None  # a rank's (start, batch total, stride)

    # -- device -----------------------------------------------------------------
    @property
    def device(self) -> str:
        return self._device_name

    def set_device(self, device: str) -> _TorchEngine:
        """Train and predict on ``device``: where, not what, it computes; not a hyperparameter."""
        dev = resolve_device(device)
        self._device_name = str(dev)
        if hasattr(self, "module_"):
            state = self.state_dict()
            self.module_.to(dev)
            self.load_state_dict(state)  # rebuilds the optimizer next to the parameters
        return self

    # -- Classifier -------------------------------------------------------------
    def initialize(self, input_shape: Sequence[int], classes: Sequence[int]) -> _TorchEngine:
        require_torch()
        super().initialize(input_shape, classes)
        init = self.__dict__.pop("params_")  # the numpy weights: the torch module owns them now
        del self.opt_state_
        with torch.no_grad():
            self.module_ = self._build(init).to(torch.device(self._device_name))
        self.optim_ = self._make_optimizer()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise InvalidArgument(
                f"{type(self).__name__} is not initialized; call fit() or initialize() first"
            )

    def _step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        return self._step_tensor(self._tensor(self._augment(X, step)), y, step)

    def _step_tensor(self, x: Any, y: Any, step: int, scale: float | None = None) -> StepResult:
        """One update on NHWC ``x`` (augmented, on the device); ``scale``: a rank's summed
        loss times ``scale`` instead of the mean (:mod:`signdb.ml.torchddp`)."""
        module, dev = self.module_, torch.device(self._device_name)
        rate = float(getattr(self, "dropout", 0.0))
        with deterministic():
            module.train()
            gen = generator(self.seed, step, DROPOUT_STREAM, dev) if rate else None
            target = torch.as_tensor(y, dtype=torch.long, device=dev)
            logits = (self._net or self._logits)(x, gen, rate)
            if scale is None:
                loss = F.cross_entropy(logits, target)
            else:
                loss = F.cross_entropy(logits, target, reduction="sum") * scale
            self.optim_.zero_grad(set_to_none=True)
            loss.backward()
            # Reported like numpy: the cost before the update, L2 included for the CNN.
            cost = float(loss.detach()) + (self._l2_penalty() if self.l2_in_cost else 0.0)
            correct = int((logits.detach().argmax(dim=1) == target).sum())
            for group in self.optim_.param_groups:
                group["lr"] = self.optimizer_.lr_at(step)
            self.optim_.step()
        return StepResult(cost, correct)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        self.module_.eval()
        out = np.zeros((len(X), len(self.classes_)), DTYPE)
        with torch.inference_mode():
            for i in range(0, len(X), PREDICT_CHUNK):
                logits = self._logits(self._tensor(X[i : i + PREDICT_CHUNK]), None, 0.0)
                out[i : i + PREDICT_CHUNK] = to_numpy(F.softmax(logits, dim=1))
        return out

    # -- checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every module tensor (own dtype) plus optimizer slots as ``optim.<param>.<slot>``."""
        self._check_fitted()
        out = {k: to_numpy(v) for k, v in self.module_.state_dict().items()}
        for name, p in self.module_.named_parameters():
            for slot, value in sorted(self.optim_.state.get(p, {}).items()):
                out[f"optim.{name}.{slot}"] = to_numpy(torch.as_tensor(value))
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> _TorchEngine:
        """Restore :meth:`state_dict` output, also from float32 or flattened arrays.

        Everything is checked before anything is overwritten, so a refused
        checkpoint leaves the model as it was. Without ``optim.*`` keys the
        optimizer starts afresh, as the numpy models' does.
        """
        self._check_fitted()
        live = self.module_.state_dict()
        missing = [k for k in live if k not in state]
        if missing:
            raise InvalidArgument(f"stored weights lack tensor {missing[0]!r}")
        tensors = {k: from_stored(k, state[k], t.shape, t.dtype) for k, t in live.items()}
        slots = self._optimizer_slots(state)
        with torch.no_grad():
            for key, t in live.items():
                t.copy_(tensors[key])
        self.optim_ = self._make_optimizer()
        # torch's own loader puts each slot on its parameter's device (``step`` stays on CPU).
        order = [p for group in self.optim_.param_groups for p in group["params"]]
        index = {id(p): i for i, p in enumerate(order)}
        params = dict(self.module_.named_parameters())
        packed = {index[id(params[name])]: got for name, got in slots.items()}
        groups = self.optim_.state_dict()["param_groups"]
        self.optim_.load_state_dict({"state": packed, "param_groups": groups})
        return self

    def _optimizer_slots(self, state: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """The ``optim.<param>.<slot>`` entries as tensors, grouped by parameter and checked."""
        params = dict(self.module_.named_parameters())
        slots: dict[str, dict[str, Any]] = {}
        for key, value in state.items():
            if not key.startswith("optim."):
                continue
            name, _, slot = key[len("optim.") :].rpartition(".")
            if name not in params:
                raise InvalidArgument(f"optimizer state {key!r} names no parameter of this model")
            shape = () if slot == "step" else params[name].shape
            slots.setdefault(name, {})[slot] = from_stored(key, value, shape, torch.float32)
        expected = SGD_SLOTS if isinstance(self.optimizer_, SGD) else ADAM_SLOTS
        for name, got in slots.items():
            if set(got) != expected:
                raise InvalidArgument(
                    f"optimizer state of {name!r} has slots {sorted(got)}, expected "
                    f"{sorted(expected)}; the checkpoint belongs to another engine or optimizer"
                )
        return slots

    # -- helpers ----------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        """torch's twin of the numpy ``optimizer_``, with L2 on the weights only."""
        named = list(self.module_.named_parameters())
        groups = [  # every model has weights and biases: neither group is empty
            {"params": [p for n, p in named if self._decays(n)], "weight_decay": float(self.l2)},
            {"params": [p for n, p in named if not self._decays(n)]},
        ]
        opt = self.optimizer_
        if isinstance(opt, Adam):
            return torch.optim.Adam(groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum)

    @staticmethod
    def _decays(name: str) -> bool:
        # ConvNet's rule: conv and dense weights; never biases or batch norm's scale.
        return name.endswith(".weight") and not name.startswith("bn")

    def _l2_penalty(self) -> float:
        weights = [p.detach() for n, p in self.module_.named_parameters() if self._decays(n)]
        return 0.5 * float(self.l2) * sum(float(w.square().sum()) for w in weights)

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        """NHWC float32 numpy -> NHWC tensor on the device (the MLP flattens it as numpy does)."""
        if tuple(X.shape[1:]) != self.input_shape_:
            raise InvalidArgument(
                f"input shape {tuple(X.shape[1:])} does not match the model's "
                f"{self.input_shape_}; preprocess images to the training size"
            )
        if not X.flags.writeable or not X.flags.c_contiguous:
            X = np.array(X, order="C")  # torch.from_numpy wants writable memory
        return torch.from_numpy(X).to(torch.device(self._device_name))

    def _dense(self, x: torch.Tensor, i: int, gen: Any, rate: float, relu: bool) -> torch.Tensor:
        """Fully connected layer ``i``: flatten (NHWC order), dropout, linear, ReLU."""
        if x.ndim > 2:
            x = x.permute(0, 2, 3, 1).reshape(len(x), -1)
        if gen is not None:
            start, total, stride = self._draw or (0, len(x), 1)  # a rank draws the whole batch's
            keep = torch.rand((total, *x.shape[1:]), generator=gen, device=x.device)
            keep = keep[start::stride] >= rate
            x = x * (keep.to(x.dtype) * (1.0 / (1.0 - rate)))
        x = self.module_[f"dense{i}"](x)
        return F.relu(x) if relu else x

    def _augment(self, X: np.ndarray, step: int) -> np.ndarray:
        return X

    def _build(self, init: dict[str, np.ndarray]) -> nn.ModuleDict:
        raise NotImplementedError

    def _logits(self, x: torch.Tensor, gen: Any, rate: float) -> torch.Tensor:
        raise NotImplementedError


def _linear(w: np.ndarray, b: np.ndarray) -> nn.Linear:
    """A linear layer holding ``w`` (out, in) and ``b``."""
    layer = nn.Linear(w.shape[1], w.shape[0])
    layer.weight.copy_(torch.from_numpy(w))
    layer.bias.copy_(torch.from_numpy(b))
    return layer


class TorchMLP(_TorchEngine, MLPClassifier):
    """:class:`~signdb.ml.mlp.MLPClassifier` on PyTorch: same hyperparameters and weights."""

    name: ClassVar[str] = "mlp"

    def _augment(self, X: np.ndarray, step: int) -> np.ndarray:
        # numpy's resample before flattening, as MLPClassifier._step does.
        return random_affine(X, self.seed, step) if self.augment else X

    def _build(self, init: dict[str, np.ndarray]) -> nn.ModuleDict:
        # numpy stores (fan_in, fan_out); nn.Linear wants (out, in).
        return nn.ModuleDict(
            {
                f"dense{i}": _linear(init[f"dense{i}.weight"].T, init[f"dense{i}.bias"])
                for i in range(self.n_layers_)
            }
        )

    def _logits(self, x: torch.Tensor, gen: Any, rate: float) -> torch.Tensor:
        h = x.reshape(len(x), -1)  # NHWC order, like numpy's reshape
        if self.standardize:  # losses.standardize_per_image, in torch
            centered = h - h.mean(dim=1, keepdim=True)
            var = (centered * centered).mean(dim=1, keepdim=True)
            h = centered / torch.sqrt(var + STANDARDIZE_EPS)
        for i in range(self.n_layers_):
            h = self._dense(h, i, None, 0.0, relu=i < self.n_layers_ - 1)
        return h


class TorchConvNet(_TorchEngine, ConvNet):
    """:class:`~signdb.ml.cnn.ConvNet` on PyTorch: same spec grammar, hyperparameters, weights."""

    name: ClassVar[str] = "cnn"
    l2_in_cost: ClassVar[bool] = True

    def _augment(self, X: np.ndarray, step: int) -> np.ndarray:
        # numpy's resample, so both engines see the same augmented batch at step k.
        return random_affine(X, self.seed, step) if self.augment else X

    def _build(self, init: dict[str, np.ndarray]) -> nn.ModuleDict:
        layers: dict[str, nn.Module] = {}
        n_conv = n_dense = 0
        for layer in (*self.spec_, ("dense",)):
            if layer[0] == "conv":
                w = init[f"conv{n_conv}.weight"]  # (out, kh, kw, in) -> (out, in, kh, kw)
                f, k, _, c = w.shape
                conv = nn.Conv2d(c, f, k, padding=k // 2, bias=not self.batch_norm)
                conv.weight.copy_(torch.from_numpy(w.transpose(0, 3, 1, 2).copy()))
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(init[f"conv{n_conv}.bias"]))
                layers[f"conv{n_conv}"] = conv.to(memory_format=torch.channels_last)
                if self.batch_norm:
                    layers[f"bn{n_conv}"] = nn.BatchNorm2d(f, eps=BN_EPS, momentum=BN_MOMENTUM)
                n_conv += 1
            elif layer[0] == "dense":
                i = n_dense
                layers[f"dense{i}"] = _linear(init[f"dense{i}.weight"], init[f"dense{i}.bias"])
                n_dense += 1
        return nn.ModuleDict(layers)

    def _logits(self, x: torch.Tensor, gen: Any, rate: float) -> torch.Tensor:
        """Walk the spec as ``ConvNet._run`` does, pooling before the ReLU where it can."""
        m, spec = self.module_, self.spec_
        x = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last, no copy
        n_conv = n_dense = pos = 0
        while pos < len(spec):
            kind = spec[pos][0]
            if kind == "conv":
                x = m[f"conv{n_conv}"](x)
                if self.batch_norm:
                    x = _batch_norm(m[f"bn{n_conv}"], x)
                if pos + 1 < len(spec) and spec[pos + 1][0] == "pool":
                    x = F.max_pool2d(x, 2)
                    pos += 1
                x = F.relu(x)
                n_conv += 1
            elif kind == "pool":
                x = F.max_pool2d(x, 2)
            elif kind == "gap":
                x = x.mean(dim=(2, 3))
            else:
                x = self._dense(x, n_dense, gen, rate, relu=True)
                n_dense += 1
            pos += 1
        return self._dense(x, n_dense, gen, rate, relu=False)


#: The torch engine's models, by the name ``--model`` takes.
TORCH_MODELS: dict[str, type[Classifier]] = {"mlp": TorchMLP, "cnn": TorchConvNet}
