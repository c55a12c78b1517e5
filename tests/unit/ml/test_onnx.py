"""ONNX graphs of the built-in models, and the contract a stored ONNX model is held to."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from signdb.errors import InvalidArgument
from signdb.ml import build_model
from signdb.ml.metrics import decide
from signdb.ml.onnx_export import to_onnx
from signdb.ml.onnx_runtime import OnnxClassifier, graph_input_name, parse_model

CASES = {
    "logreg": ("logreg", "numpy", (8, 8, 1), 2, {"iterations": 30, "lr": 0.5}),
    "softmax-rgb": ("softmax", "numpy", (6, 6, 3), 3, {"iterations": 4}),
    "softmax-raw": ("softmax", "numpy", (6, 6, 1), 3, {"iterations": 4, "standardize": False}),
    "mlp-two-layers": ("mlp", "numpy", (8, 8, 1), 3, {"iterations": 2, "hidden": (16, 8)}),
    "mlp-torch": ("mlp", "torch", (8, 8, 1), 3, {"iterations": 2, "hidden": (16,)}),
    "cnn-default": ("cnn", "numpy", (16, 16, 1), 3, {"iterations": 1, "batch_size": 20}),
    "cnn-torch-default": ("cnn", "torch", (16, 16, 1), 3, {"iterations": 1, "batch_size": 20}),
    # No batch norm (conv biases), a 5x5 kernel, odd sizes pooled, a dense layer after a conv.
    "cnn-no-bn": (
        "cnn",
        "numpy",
        (9, 9, 3),
        2,
        {"iterations": 2, "layers": "conv4-pool-conv6k5-dense8", "batch_norm": False},
    ),
    "cnn-torch-no-bn": (
        "cnn",
        "torch",
        (9, 9, 3),
        2,
        {"iterations": 2, "layers": "conv4-pool-pool-dense8", "batch_norm": False},
    ),
}


def _fitted(key):
    name, engine, shape, k, hp = CASES[key]
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (40, *shape), dtype=np.uint8)
    labels = np.array([3, 5, 9][:k] * 20)[:40]
    model = build_model(name, engine=engine, batch_size=hp.pop("batch_size", 10), **hp)
    if engine == "torch":
        model.set_device("cpu")
    model.fit(pixels.astype(np.float32) / np.float32(255), labels)
    return model, pixels


@pytest.mark.parametrize("key", list(CASES))
def test_the_graph_computes_predict_proba_pixels(key):
    model, pixels = _fitted(key)
    graph = to_onnx(model, metadata={"signdb.run_id": "1"})
    runner = OnnxClassifier(graph.SerializeToString())
    proba, label = runner.run(pixels.astype(np.float32) / np.float32(255))
    expected = model.predict_proba_pixels(pixels)
    assert np.abs(proba - expected).max() <= 1e-5
    assert label.tolist() == decide(expected, model.classes_)[0].tolist()
    runner.check(pixels.shape[1:], len(model.classes_))
    assert {p.key: p.value for p in graph.metadata_props} == {"signdb.run_id": "1"}


def test_a_binary_label_is_the_positive_class_at_exactly_one_half():
    model, _ = _fitted("logreg")
    model.params_["weight"][:] = 0  # every image at z = 0: p = 0.5 exactly
    model.params_["bias"][:] = 0
    runner = OnnxClassifier(to_onnx(model).SerializeToString())
    proba, label = runner.run(np.zeros((2, 8, 8, 1), np.float32))
    assert proba.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert label.tolist() == [5, 5]  # decide(): positive when p >= 0.5; argmax would say 3


def test_an_untrained_model_cannot_be_exported():
    with pytest.raises(InvalidArgument, match="is not trained"):
        to_onnx(build_model("softmax"))


def _user_model(in_shape, out_k, *, softmax=True, dtype=TensorProto.FLOAT, inputs=1):
    """A user's graph: flatten, keep the first out_k values, optionally softmax them."""
    xs = [helper.make_tensor_value_info(f"x{i}", dtype, in_shape) for i in range(inputs)]
    p = helper.make_tensor_value_info("p", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Cast", ["x0"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["xf"], ["f"]),
        helper.make_node("Slice", ["f", "s", "e", "a"], ["z" if softmax else "p"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["p"]))
    consts = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v])
        for n, v in (("s", 0), ("e", out_k), ("a", 1))
    ]
    model = helper.make_model(helper.make_graph(nodes, "user", xs, [p], consts))
    return model.SerializeToString()


def test_a_fitting_user_model_passes_and_is_read_as_probabilities():
    data = _user_model(["N", 4, 4, 1], 3)
    runner = OnnxClassifier(data)
    runner.check((4, 4, 1), 3)
    proba, label = runner.run(np.zeros((5, 4, 4, 1), np.float32))
    assert proba.shape == (5, 3) and label is None  # no graph label: the server decides
    assert graph_input_name(data) == "x0"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _user_model(["N", 8, 8, 1], 3),
            "has shape ['N', 8, 8, 1]; the run's images are [N, 4, 4, 1]",
        ),
        (_user_model(["N", 4, 4], 3), "has shape ['N', 4, 4]"),
        (_user_model(["N", 4, 4, 1], 2), "expected [2, 3]"),
        (_user_model(["N", 4, 4, 1], 3, softmax=False), "is not probabilities"),
        (_user_model(["N", 4, 4, 1], 3, dtype=TensorProto.UINT8), "is tensor(uint8)"),
        (_user_model(["N", 4, 4, 1], 3, inputs=2), "takes 2 inputs"),
    ],
    ids=["size", "rank", "classes", "logits", "dtype", "inputs"],
)
def test_a_user_model_that_does_not_fit_is_refused_with_the_contract(data, message):
    with pytest.raises(InvalidArgument) as e:
        OnnxClassifier(data).check((4, 4, 1), 3)
    assert message in str(e.value)
    assert "[N, H, W, C] in [0, 1]" in str(e.value)


def test_bytes_that_are_not_onnx_are_refused():
    with pytest.raises(InvalidArgument, match="not an ONNX model"):
        parse_model(b"\x00\x01 definitely not protobuf \xff" * 3)
    with pytest.raises(InvalidArgument, match="onnxruntime cannot load the model"):
        OnnxClassifier(
            onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])).SerializeToString()
        )
