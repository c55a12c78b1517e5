"""A trained model as an ONNX graph, built with the ``onnx`` package from its tensors.

Every built-in model and engine (logreg, softmax, mlp, cnn; numpy and torch)
becomes one graph with the same forward pass as its ``predict_proba_pixels``:

* input ``images``: float32 ``[N, H, W, C]`` in [0, 1], the stored uint8 pixels
  divided by 255 (``signdb.ml.base.pixels_to_float``), at the dataset's size and colour;
* output ``probabilities``: float32 ``[N, K]``, columns in the run's class order;
* output ``label``: int64 ``[N]``, the dataset label ``predictions.predicted``
  stores (binary: the positive class when its probability is >= 0.5; else the argmax).

logreg and softmax compute in double precision, as they do when scoring (and as
``signdb.predict_proba`` does in SQL); the networks compute in float32 like
their numpy and torch forward passes. Dropout and augmentation are training-only
and absent; batch norm uses its running statistics.

Examples
--------
>>> import numpy as np, onnxruntime
>>> from signdb.ml import SoftmaxRegression
>>> X = np.random.default_rng(0).random((12, 4, 4, 1), dtype=np.float32)
>>> model = SoftmaxRegression(iterations=5).fit(X, np.arange(12) % 3)
>>> graph = to_onnx(model, metadata={"signdb.run_id": "7"})
>>> session = onnxruntime.InferenceSession(graph.SerializeToString())
>>> proba, label = session.run(None, {"images": X})
>>> bool(np.abs(proba - model.predict_proba(X)).max() < 1e-5)
True
>>> bool((label == model.predict(X)).all())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from signdb._version import __version__
from signdb.errors import InvalidArgument
from signdb.ml.base import Classifier
from signdb.ml.cnn import ConvNet
from signdb.ml.logreg import LogisticRegression
from signdb.ml.losses import STANDARDIZE_EPS
from signdb.ml.mlp import MLPClassifier
from signdb.ml.softmax import SoftmaxRegression

#: ONNX opset and IR version: opset 18 (ReduceMean takes its axes as an input)
#: in IR 8, which onnxruntime has loaded since 1.14.
OPSET = 18
IR_VERSION = 8
INPUT = "images"
PROBABILITIES = "probabilities"
LABEL = "label"
BN_EPS = 1e-5

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE


class GraphBuilder:
    """Nodes and initializers of one graph, with generated tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, value: Any, dtype: Any = None) -> str:
        name = self._name("c")
        array = np.asarray(value, dtype=dtype)
        # np.array, not ascontiguousarray, which would make a scalar one-dimensional.
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attrs: Any) -> str:
        out = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"


def to_onnx(model: Classifier, *, metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX graph of a trained built-in model; ``metadata`` goes to ``metadata_props``."""
    if not hasattr(model, "input_shape_"):
        raise InvalidArgument(f"{type(model).__name__} is not trained; export a trained model")
    g = GraphBuilder()
    h, w, c = model.input_shape_
    # The linear models compute in double precision, the networks in float32.
    if isinstance(model, LogisticRegression):
        proba, dtype = _logreg(g, model), np.float64
    elif isinstance(model, SoftmaxRegression):
        proba, dtype = _softmax(g, model), np.float64
    elif isinstance(model, MLPClassifier):
        proba, dtype = _mlp(g, model, _tensors(model)), np.float32
    elif isinstance(model, ConvNet):
        proba, dtype = _cnn(g, model, _tensors(model)), np.float32
    else:
        raise InvalidArgument(
            f"no ONNX export for {type(model).__name__}; the built-in models are logreg, "
            "softmax, mlp and cnn"
        )
    _outputs(g, proba, dtype, [int(x) for x in model.classes_])
    k = len(model.classes_)
    graph = helper.make_graph(
        g.nodes,
        f"signdb_{model.name}",
        [helper.make_tensor_value_info(INPUT, F32, ["N", h, w, c])],
        [
            helper.make_tensor_value_info(PROBABILITIES, F32, ["N", k]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"]),
        ],
        g.initializers,
    )
    out = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="signdb",
        producer_version=__version__,
        doc_string=(
            f"signdb {model.name}: images float32 [N, {h}, {w}, {c}] in [0, 1] (uint8 pixels / "
            f"255) -> probabilities float32 [N, {k}] in class order, label int64 [N]"
        ),
    )
    out.ir_version = IR_VERSION
    helper.set_model_props(out, dict(metadata or {}))
    onnx.checker.check_model(out)
    return out


def _tensors(model: Classifier) -> dict[str, np.ndarray]:
    """The model's tensors in the numpy engine's layout, whichever engine trained it.

    torch keeps ``dense{i}.weight`` of the MLP as ``(out, in)`` (numpy: ``(in,
    out)``) and convolutions as ``(out, in, kh, kw)`` (numpy: ``(out, kh, kw, in)``).
    """
    if getattr(model, "engine", "numpy") != "torch":
        return dict(model.params_)
    state = {k: np.asarray(v, np.float32) for k, v in model.state_dict().items()}
    if isinstance(model, MLPClassifier):
        for i in range(model.n_layers_):
            state[f"dense{i}.weight"] = state[f"dense{i}.weight"].T
    else:
        for key in [k for k in state if k.startswith("conv") and k.endswith(".weight")]:
            state[key] = state[key].transpose(0, 2, 3, 1)
    return state


def _flat(g: GraphBuilder, dtype: int) -> str:
    """The input flattened row-major to ``[N, H*W*C]``, in ``dtype``."""
    x = g.op("Flatten", INPUT, axis=1)
    return g.op("Cast", x, to=dtype) if dtype != F32 else x


def _standardize(g: GraphBuilder, x: str, np_dtype: Any) -> str:
    """``losses.standardize_per_image``: (x - mean) / sqrt(var + eps), per row."""
    axes = g.const([1], np.int64)
    centered = g.op("Sub", x, g.op("ReduceMean", x, axes, keepdims=1))
    var = g.op("ReduceMean", g.op("Mul", centered, centered), axes, keepdims=1)
    eps = g.const(STANDARDIZE_EPS, np_dtype)
    return g.op("Div", centered, g.op("Sqrt", g.op("Add", var, eps)))


def _logreg(g: GraphBuilder, model: LogisticRegression) -> str:
    x = _flat(g, F64)
    w = model.params_["weight"].astype(np.float64)
    z = g.op("Add", g.op("MatMul", x, g.const(w)), g.const(model.params_["bias"], np.float64))
    p = g.op("Unsqueeze", g.op("Sigmoid", z), g.const([1], np.int64))
    return g.op("Concat", g.op("Sub", g.const(1.0, np.float64), p), p, axis=1)


def _softmax(g: GraphBuilder, model: SoftmaxRegression) -> str:
    x = _flat(g, F64)
    if model.standardize:
        x = _standardize(g, x, np.float64)
    w = g.const(model.params_["weight"], np.float64)
    z = g.op("Add", g.op("MatMul", x, w), g.const(model.params_["bias"], np.float64))
    return g.op("Softmax", z, axis=1)


def _mlp(g: GraphBuilder, model: MLPClassifier, p: dict[str, np.ndarray]) -> str:
    h = _flat(g, F32)
    if model.standardize:
        h = _standardize(g, h, np.float32)
    for i in range(model.n_layers_):
        w, b = g.const(p[f"dense{i}.weight"], np.float32), g.const(p[f"dense{i}.bias"], np.float32)
        h = g.op("Add", g.op("MatMul", h, w), b)
        if i < model.n_layers_ - 1:
            h = g.op("Relu", h)
    return g.op("Softmax", h, axis=1)


def _cnn(g: GraphBuilder, model: ConvNet, p: dict[str, np.ndarray]) -> str:
    """``ConvNet._run`` at inference, in NCHW: conv, batch norm, pool, ReLU, gap, dense."""
    x = g.op("Transpose", INPUT, perm=[0, 3, 1, 2])
    spec, n_conv, n_dense, pos, image = model.spec_, 0, 0, 0, True

    def dense(x: str, relu: bool) -> str:
        nonlocal n_dense, image
        if image:  # numpy flattens NHWC activations: back to that order first
            x = g.op("Flatten", g.op("Transpose", x, perm=[0, 2, 3, 1]), axis=1)
            image = False
        w, b = p[f"dense{n_dense}.weight"], p[f"dense{n_dense}.bias"]
        x = g.op("Gemm", x, g.const(w, np.float32), g.const(b, np.float32), transB=1)
        n_dense += 1
        return g.op("Relu", x) if relu else x

    while pos < len(spec):
        kind = spec[pos][0]
        if kind == "conv":
            w = p[f"conv{n_conv}.weight"].transpose(0, 3, 1, 2)  # (out, in, kh, kw)
            k = w.shape[2]
            inputs = [x, g.const(w, np.float32)]
            if not model.batch_norm:
                inputs.append(g.const(p[f"conv{n_conv}.bias"], np.float32))
            x = g.op("Conv", *inputs, kernel_shape=[k, k], pads=[k // 2] * 4)
            if model.batch_norm:
                bn = [
                    p[f"bn{n_conv}.{t}"] for t in ("weight", "bias", "running_mean", "running_var")
                ]
                x = g.op(
                    "BatchNormalization", x, *(g.const(t, np.float32) for t in bn), epsilon=BN_EPS
                )
            if pos + 1 < len(spec) and spec[pos + 1][0] == "pool":
                x = _maxpool(g, x)
                pos += 1
            x = g.op("Relu", x)
            n_conv += 1
        elif kind == "pool":
            x = _maxpool(g, x)
        elif kind == "gap":
            x = g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)
            image = False
        else:
            x = dense(x, relu=True)
        pos += 1
    return g.op("Softmax", dense(x, relu=False), axis=1)


def _maxpool(g: GraphBuilder, x: str) -> str:
    # 2x2, stride 2, floor: an odd last row or column is dropped, as maxpool2_forward does.
    return g.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])


def _outputs(g: GraphBuilder, proba: str, dtype: Any, classes: list[int]) -> None:
    """``label``, decided at the probabilities' own precision (``metrics.decide``), and
    ``probabilities`` in float32."""
    if len(classes) == 2:
        positive = g.op("Gather", proba, g.const(1, np.int64), axis=1)
        is_positive = g.op("GreaterOrEqual", positive, g.const(0.5, dtype))
        label = g.op(
            "Where", is_positive, g.const(classes[1], np.int64), g.const(classes[0], np.int64)
        )
    else:
        best = g.op("ArgMax", proba, axis=1, keepdims=0)
        label = g.op("Gather", g.const(classes, np.int64), best, axis=0)
    g.op("Identity", label, output=LABEL)
    if dtype == np.float64:
        g.op("Cast", proba, to=F32, output=PROBABILITIES)
    else:
        g.op("Identity", proba, output=PROBABILITIES)
