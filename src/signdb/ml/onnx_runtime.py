"""An ONNX model under onnxruntime: the one way signdb serves every run, built-in or not.

A built-in run's graph comes from :func:`signdb.ml.onnx_export.to_onnx`; a run of
people's own code stores its own file (``run.save_onnx``). Either way the model
takes float32 ``[N, H, W, C]`` images in [0, 1] and gives class probabilities
``[N, K]`` in the run's class order. :meth:`OnnxClassifier.check` holds a
stored file to that contract, so a bad one is refused when it is saved, not
when the first request arrives.

Examples
--------
>>> import numpy as np
>>> from signdb.ml import SoftmaxRegression
>>> from signdb.ml.onnx_export import to_onnx
>>> X = np.random.default_rng(0).random((12, 4, 4, 1), dtype=np.float32)
>>> fitted = SoftmaxRegression(iterations=5).fit(X, np.arange(12) % 3)
>>> model = OnnxClassifier(to_onnx(fitted).SerializeToString())
>>> model.check((4, 4, 1), n_classes=3)
>>> proba, label = model.run(X[:2])
>>> proba.shape, label.tolist() == fitted.predict(X[:2]).tolist()
((2, 3), True)
>>> model.check((8, 8, 1), n_classes=3)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.InvalidArgument: the ONNX model's input 'images' has shape ['N', 4, 4, 1]; ...
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort

from signdb.errors import InvalidArgument
from signdb.ml.onnx_export import LABEL, PROBABILITIES

#: Rows of a probability vector may miss 1 by this much (float32 softmax of a custom model).
SUM_TOLERANCE = 1e-3
CONTRACT = (
    "a stored model takes one float32 input [N, H, W, C] in [0, 1] (uint8 pixels / 255, "
    "at the dataset's size and colour) and outputs class probabilities [N, K] in run.classes "
    "order (append a Softmax to a model that outputs logits)"
)


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: shape-merge warnings are not the user's
    # onnxruntime's worker threads spin for a while after each run by default; between
    # requests that starves the alias query (and PostgreSQL) of the same cores. The
    # serving core's median MLP request at batch 1: 13 ms spinning, 1.2 ms not (CNN at
    # batch 64: 94 ms, 79 ms), on 2 shared cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxClassifier:
    """An onnxruntime session over one model file, with its input and outputs picked.

    The probabilities are the output named ``probabilities``, else the first
    output; a built-in graph's ``label`` output, when present, is read too.
    ``run`` is safe to call from many threads at once (onnxruntime's sessions are).
    """

    def __init__(self, model: bytes) -> None:
        try:
            self.session = ort.InferenceSession(
                model, sess_options=_session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/...
            raise InvalidArgument(
                f"onnxruntime cannot load the model ({str(e).splitlines()[0][:300]}); {CONTRACT}"
            ) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise InvalidArgument(f"the ONNX model takes {len(inputs)} inputs {names}; {CONTRACT}")
        self.input = inputs[0]
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.output = outputs.get(PROBABILITIES) or self.session.get_outputs()[0]
        self.label_output = (
            LABEL if LABEL in outputs and self.output.name == PROBABILITIES else None
        )
        self._fetch = [self.output.name] + ([self.label_output] if self.label_output else [])

    def check(self, input_shape: Sequence[int], n_classes: int) -> None:
        """Refuse a model that does not fit a run's images and classes: the contract above."""
        if self.input.type != "tensor(float)":
            raise InvalidArgument(
                f"the ONNX model's input {self.input.name!r} is {self.input.type}; {CONTRACT}"
            )
        shape = list(self.input.shape)
        expected = [None, *input_shape]
        fits = len(shape) == 4 and all(
            want is None or not isinstance(got, int) or got == want
            for got, want in zip(shape, expected, strict=True)
        )
        if not fits:
            raise InvalidArgument(
                f"the ONNX model's input {self.input.name!r} has shape {shape}; the run's images "
                f"are [N, {', '.join(str(d) for d in input_shape)}]: {CONTRACT}"
            )
        probe = np.full((2, *input_shape), 0.5, np.float32)
        try:
            proba, _ = self.run(probe)
        except InvalidArgument:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the graph raises on a valid input
            raise InvalidArgument(
                f"the ONNX model fails on a batch of 2 images ({str(e).splitlines()[0][:300]}); "
                f"{CONTRACT}"
            ) from None
        if proba.shape != (2, n_classes):
            raise InvalidArgument(
                f"the ONNX model's output {self.output.name!r} has shape {list(proba.shape)} for 2 "
                f"images; the run has {n_classes} classes, so expected [2, {n_classes}]: {CONTRACT}"
            )
        if not (
            np.isfinite(proba).all()
            and (proba >= 0).all()
            and np.abs(proba.sum(axis=1) - 1).max() <= SUM_TOLERANCE
        ):
            raise InvalidArgument(
                f"the ONNX model's output {self.output.name!r} is not probabilities (rows sum to "
                f"{proba.sum(axis=1).round(4).tolist()}); {CONTRACT}"
            )

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities float32 [N, K], the graph's labels [N] or None) for float32 images."""
        got = self.session.run(self._fetch, {self.input.name: images})
        proba = np.asarray(got[0], dtype=np.float32)
        return proba, (np.asarray(got[1], dtype=np.int64) if self.label_output else None)


def parse_model(data: bytes) -> onnx.ModelProto:
    """The model in ``data``, or an error saying it is not an ONNX file."""
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InvalidArgument(
            f"not an ONNX model ({type(e).__name__}: {str(e)[:200]}); save it with "
            "torch.onnx.export, skl2onnx or onnx.save"
        ) from None
    if not model.graph.node:
        raise InvalidArgument(
            "not an ONNX model: the file parses but holds no graph; save it with "
            "torch.onnx.export, skl2onnx or onnx.save"
        )
    return model


def graph_input_name(data: bytes) -> str:
    """The name of the model's one input (initializers listed as inputs are not inputs)."""
    graph = parse_model(data).graph
    weights = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in weights)
