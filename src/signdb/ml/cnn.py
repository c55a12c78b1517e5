"""A small convolutional network in numpy: ``--model cnn``.

The architecture comes from a spec string, tokens joined by ``-``:

* ``conv<N>`` or ``conv<N>k<K>``: ``N`` filters of ``K x K`` (default 3),
  stride 1, "same" padding, then batch norm (when ``batch_norm``) and ReLU;
* ``pool``: 2x2 max pooling, stride 2;
* ``gap``: global average pooling (one value per channel);
* ``dense<N>``: fully connected layer of ``N`` units and ReLU.

A final fully connected layer to the classes and a softmax are always added;
dropout (rate ``dropout``) is applied to the input of every fully connected
layer while training.

Tensors in ``params_``: ``conv<i>.weight`` ``(out, kh, kw, in)`` and
``conv<i>.bias`` (only without batch norm); ``bn<i>.weight``, ``bn<i>.bias``,
``bn<i>.running_mean``, ``bn<i>.running_var`` (channels); ``dense<j>.weight``
``(out, in)`` and ``dense<j>.bias``, where ``j`` counts the fully connected
layers and the last one is the classifier. Batch norm's running statistics
live in ``params_`` (the optimizer never touches them) so that stored weights
rebuild the same predictor and a resumed run continues byte for byte.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 8, 8, 1), dtype=np.float32) * 0.2
    >>> X[:20, :, :4] += 0.8  # class 0: bright left half
    >>> X[20:, :, 4:] += 0.8  # class 1: bright right half
    >>> y = np.repeat([0, 1], 20)
    >>> net = ConvNet(layers="conv4-pool-dense8", iterations=10, batch_size=8, augment=False)
    >>> float((net.fit(X, y).predict(X) == y).mean())
    1.0
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from signdb.errors import InvalidArgument
from signdb.ml import layers as L
from signdb.ml.augment import random_affine
from signdb.ml.base import DTYPE, Classifier, StepResult, step_rng
from signdb.ml.optim import Optimizer, make_optimizer

#: ``step_rng`` streams (augmentation uses :data:`signdb.ml.augment.AUGMENT_STREAM`).
INIT_STREAM = 3
DROPOUT_STREAM = 12

DEFAULT_LAYERS = "conv16-pool-conv32-pool-conv64-pool-conv128-pool-conv256-gap"
#: ``layers="auto"`` pools no further than this: smaller feature maps lose the hand's shape.
AUTO_MIN_SIDE = 4
SPEC_GRAMMAR = (
    "tokens joined by '-': conv<N> or conv<N>k<K> (N filters, K x K, default 3), "
    "pool (2x2 max), gap (global average), dense<N>; e.g. " + DEFAULT_LAYERS
)
_TOKEN = re.compile(
    r"conv(?P<conv>[1-9]\d*)(?:k(?P<k>[1-9]\d*))?|pool|gap|dense(?P<dense>[1-9]\d*)"
)

#: Rows per chunk in ``predict_proba``, to bound activation memory.
PREDICT_CHUNK = 256
BN_MOMENTUM = 0.9


def fit_layers(spec: str, input_shape: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """The architecture for ``input_shape``: ``"auto"`` fits the default to the image size.

    ``auto`` is :data:`DEFAULT_LAYERS` without the pools that would take the
    feature map below 4x4 (so 64x64 images get all four, 8x8 images one). An
    explicit spec is used as written.

    >>> [t[0] for t in fit_layers("auto", (8, 8, 1))]
    ['conv', 'pool', 'conv', 'conv', 'conv', 'conv', 'gap']
    >>> len(fit_layers("auto", (64, 64, 3))) == len(parse_layers(DEFAULT_LAYERS))
    True
    """
    if spec != "auto":
        return parse_layers(spec)
    side = min(input_shape[:2])
    out = []
    for layer in parse_layers(DEFAULT_LAYERS):
        if layer[0] == "pool":
            if side // 2 < AUTO_MIN_SIDE:
                continue
            side //= 2
        out.append(layer)
    return out


def parse_layers(spec: str) -> list[tuple[Any, ...]]:
    """Parse an architecture spec into ``("conv", n, k)``, ``("pool",)``,
    ``("gap",)`` and ``("dense", n)`` tuples.

    >>> parse_layers("conv8k5-pool-gap-dense16")
    [('conv', 8, 5), ('pool',), ('gap',), ('dense', 16)]
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgument(
            f"layers spec must be a non-empty string, got {spec!r}; {SPEC_GRAMMAR}"
        )
    out: list[tuple[Any, ...]] = []
    flat = False
    for token in spec.strip().lower().split("-"):
        m = _TOKEN.fullmatch(token)
        if m is None:
            raise InvalidArgument(f"bad layer {token!r} in layers spec {spec!r}; {SPEC_GRAMMAR}")
        if m["conv"]:
            k = int(m["k"] or 3)
            if k % 2 == 0:
                raise InvalidArgument(
                    f"bad layer {token!r} in layers spec {spec!r}: kernel size must be odd; "
                    f"{SPEC_GRAMMAR}"
                )
            layer: tuple[Any, ...] = ("conv", int(m["conv"]), k)
        elif m["dense"]:
            layer = ("dense", int(m["dense"]))
        else:
            layer = (token,)
        if flat and layer[0] in ("conv", "pool", "gap"):
            raise InvalidArgument(
                f"bad layer {token!r} in layers spec {spec!r}: image layers cannot follow "
                f"gap or dense; {SPEC_GRAMMAR}"
            )
        flat = flat or layer[0] in ("gap", "dense")
        out.append(layer)
    return out


class ConvNet(Classifier):
    """Conv/pool/dense network trained with mini-batch Adam, L2 and augmentation.

    Hyperparameters (keyword-only; the defaults were chosen on validation
    folds of Sign Language Digits, all 10 digits at 64x64 gray; the README's
    accuracy table has their test accuracy per split seed and engine):

    * ``layers``: architecture spec, see the module docstring; ``"auto"`` (the
      default) is :data:`DEFAULT_LAYERS` fitted to the image size (:func:`fit_layers`).
    * ``lr``, ``optimizer`` (``"adam"``, ``"momentum"``, ``"sgd"``).
    * ``iterations``: epochs; ``batch_size``: images per step.
    * ``lr_schedule``: ``"cosine"`` (the default) anneals the rate to 0 over
      the whole run, whose length the trainer passes to :meth:`plan`;
      ``"step"`` multiplies it by ``lr_decay`` every ``lr_decay_every`` steps;
      ``None`` keeps it constant.
    * ``l2``: weight decay on conv and dense weights (not biases or BN).
    * ``dropout``: rate on the input of every fully connected layer.
    * ``batch_norm``: batch norm after every convolution.
    * ``augment``: random shifts/rotations/zooms of each training batch
      (:func:`signdb.ml.augment.random_affine`).
    """

    name: ClassVar[str] = "cnn"

    def __init__(
        self,
        *,
        layers: str = "auto",
        lr: float = 0.002,
        iterations: int = 40,
        batch_size: int | None = 32,
        seed: int = 42,
        optimizer: str = "adam",
        l2: float = 1e-4,
        dropout: float = 0.1,
        batch_norm: bool = True,
        augment: bool = True,
        lr_schedule: str | None = "cosine",
        lr_decay: float = 0.5,
        lr_decay_every: int | None = 700,
    ) -> None:
        super().__init__(lr=lr, iterations=iterations, batch_size=batch_size, seed=seed)
        self.layers = layers
        self.optimizer = optimizer
        self.l2 = l2
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.augment = augment
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.lr_decay_every = lr_decay_every

    # -- hooks --------------------------------------------------------------
    def _validate(self) -> None:
        self.spec_ = fit_layers(self.layers, self.input_shape_)
        if not (isinstance(self.l2, (int, float)) and self.l2 >= 0):
            raise InvalidArgument(f"l2 must be >= 0, got {self.l2!r}; pass e.g. 1e-4")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise InvalidArgument(f"dropout must be in [0, 1), got {self.dropout!r}; pass e.g. 0.1")
        for flag in ("batch_norm", "augment"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidArgument(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.lr_schedule not in (None, "step", "cosine"):
            raise InvalidArgument(
                f"cnn supports lr_schedule None, 'step' or 'cosine', got {self.lr_schedule!r}; "
                "pass e.g. lr_schedule='cosine'"
            )
        # "cosine" anneals over the whole run: the trainer's plan() sets its horizon.
        self.optimizer_: Optimizer = make_optimizer(
            self.optimizer,
            self.lr,
            lr_schedule=self.lr_schedule,
            lr_decay=self.lr_decay,
            lr_decay_every=self.lr_decay_every,
        )

    def _init_params(self, input_shape: tuple[int, ...], n_classes: int) -> dict[str, np.ndarray]:
        if len(input_shape) != 3:
            raise InvalidArgument(
                f"cnn needs images shaped (height, width, channels), got {input_shape}"
            )
        rng = step_rng(self.seed, 0, INIT_STREAM)
        h, w, c = input_shape
        p: dict[str, np.ndarray] = {}
        flat: int | None = None
        n_conv = n_dense = 0

        def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
            return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(DTYPE)

        def dense(width: int) -> None:
            nonlocal flat, n_dense
            fan_in = flat if flat is not None else h * w * c
            p[f"dense{n_dense}.weight"] = he((width, fan_in), fan_in)
            p[f"dense{n_dense}.bias"] = np.zeros(width, DTYPE)
            flat, n_dense = width, n_dense + 1

        for layer in self.spec_:
            if layer[0] == "conv":
                _, f, k = layer
                p[f"conv{n_conv}.weight"] = he((f, k, k, c), k * k * c)
                if self.batch_norm:
                    p[f"bn{n_conv}.weight"] = np.ones(f, DTYPE)
                    p[f"bn{n_conv}.bias"] = np.zeros(f, DTYPE)
                    p[f"bn{n_conv}.running_mean"] = np.zeros(f, DTYPE)
                    p[f"bn{n_conv}.running_var"] = np.ones(f, DTYPE)
                else:
                    p[f"conv{n_conv}.bias"] = np.zeros(f, DTYPE)
                c, n_conv = f, n_conv + 1
            elif layer[0] == "pool":
                h, w = h // 2, w // 2
                if h == 0 or w == 0:
                    raise InvalidArgument(
                        f"layers spec {self.layers!r} pools {input_shape[:2]} images below 1x1; "
                        "use fewer 'pool' layers"
                    )
            elif layer[0] == "gap":
                flat = c
            else:
                dense(layer[1])
        dense(n_classes)
        return p

    def _step(self, X: np.ndarray, y: np.ndarray, step: int) -> StepResult:
        if self.augment:
            X = random_affine(X, self.seed, step)
        logits, caches = self._run(X, training=True, step=step)
        correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        loss, dlogits = L.softmax_cross_entropy(logits, y)
        grads = self._backward(dlogits, caches)
        if self.l2:
            l2 = DTYPE(self.l2)
            for key in grads:
                if key.endswith(".weight") and not key.startswith("bn"):
                    w = self.params_[key]
                    loss += 0.5 * self.l2 * float(np.vdot(w, w))
                    grads[key] += l2 * w
        self.optimizer_.update(self.params_, grads, self.opt_state_, step)
        return StepResult(float(loss), correct)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        chunks = [
            L.softmax(self._run(X[i : i + PREDICT_CHUNK], training=False, step=0)[0])
            for i in range(0, len(X), PREDICT_CHUNK)
        ]
        if not chunks:
            return np.zeros((0, len(self.classes_)), DTYPE)
        return np.concatenate(chunks)

    # -- the network ----------------------------------------------------------
    def _run(self, X: np.ndarray, *, training: bool, step: int) -> tuple[np.ndarray, list]:
        """Logits and, per layer, ``(kind, index, cache)`` for :meth:`_backward`.

        One walk over the spec, longer than most functions here on purpose: the
        layer counters, the dropout generator and the cache list are shared by
        every branch, and splitting the walk would pass all of them around.
        """
        p = self.params_
        rng = step_rng(self.seed, step, DROPOUT_STREAM) if training and self.dropout else None
        caches: list[tuple[str, int, Any]] = []
        a = X
        n_conv = n_dense = 0

        def dense(a: np.ndarray, relu: bool) -> np.ndarray:
            nonlocal n_dense
            if a.ndim > 2:
                caches.append(("flatten", 0, a.shape))
                a = a.reshape(len(a), -1)
            if rng is not None:
                mask = L.dropout_mask(rng, a.shape, self.dropout)
                a = a * mask
                caches.append(("dropout", n_dense, mask))
            a, cache = L.dense_forward(a, p[f"dense{n_dense}.weight"], p[f"dense{n_dense}.bias"])
            caches.append(("dense", n_dense, cache))
            if relu:
                a, cache = L.relu_forward(a)
                caches.append(("relu", n_dense, cache))
            n_dense += 1
            return a

        spec = self.spec_
        pos = 0
        while pos < len(spec):
            kind = spec[pos][0]
            if kind == "conv":
                i = n_conv
                w = p[f"conv{i}.weight"]
                a, cache = L.conv2d_forward(a, w, p.get(f"conv{i}.bias"), w.shape[1] // 2)
                caches.append(("conv", i, cache))
                if self.batch_norm:
                    a, cache = L.batchnorm_forward(
                        a,
                        p[f"bn{i}.weight"],
                        p[f"bn{i}.bias"],
                        p[f"bn{i}.running_mean"],
                        p[f"bn{i}.running_var"],
                        training=training,
                        momentum=BN_MOMENTUM,
                    )
                    caches.append(("bn", i, cache))
                # max and ReLU commute: pooling first gives the same network
                # with a 4x smaller ReLU.
                if pos + 1 < len(spec) and spec[pos + 1][0] == "pool":
                    a, cache = L.maxpool2_forward(a)
                    caches.append(("pool", 0, cache))
                    pos += 1
                a, cache = L.relu_forward(a)
                caches.append(("relu", i, cache))
                n_conv += 1
            elif kind == "pool":
                a, cache = L.maxpool2_forward(a)
                caches.append(("pool", 0, cache))
            elif kind == "gap":
                a, cache = L.global_avgpool_forward(a)
                caches.append(("gap", 0, cache))
            else:
                a = dense(a, relu=True)
            pos += 1
        return dense(a, relu=False), caches

    def _backward(self, dout: np.ndarray, caches: list) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        # Nothing upstream of the first weighted layer needs a gradient.
        first = next(pos for pos, (kind, _, _) in enumerate(caches) if kind in ("conv", "dense"))
        d = dout
        for pos in range(len(caches) - 1, first - 1, -1):
            kind, i, cache = caches[pos]
            need_dx = pos > first
            if kind == "dense":
                d, grads[f"dense{i}.weight"], grads[f"dense{i}.bias"] = L.dense_backward(
                    d, cache, need_dx=need_dx
                )
            elif kind == "conv":
                d, grads[f"conv{i}.weight"], db = L.conv2d_backward(d, cache, need_dx=need_dx)
                if db is not None:
                    grads[f"conv{i}.bias"] = db
            elif kind == "bn":
                d, grads[f"bn{i}.weight"], grads[f"bn{i}.bias"] = L.batchnorm_backward(d, cache)
            elif kind == "relu":
                d = L.relu_backward(d, cache)
            elif kind == "dropout":
                d = d * cache
            elif kind == "flatten":
                d = d.reshape(cache)
            elif kind == "pool":
                d = L.maxpool2_backward(d, cache)
            else:  # gap
                d = L.global_avgpool_backward(d, cache)
        return grads
