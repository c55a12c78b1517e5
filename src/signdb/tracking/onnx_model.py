"""A user's own ONNX model for ``run.save_onnx``: read, checked against the run, hashed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from signdb.errors import InvalidArgument, NotFound


def check_onnx_model(
    model: bytes | str | Path, shape: Sequence[int], n_classes: int
) -> tuple[bytes, str]:
    """(bytes, sha256) of a model that fits a run's images and classes, else InvalidArgument."""
    from signdb.ml.onnx_runtime import OnnxClassifier, parse_model  # onnxruntime: when used

    data = _model_bytes(model)
    parse_model(data)
    OnnxClassifier(data).check(tuple(shape), n_classes)
    return data, hashlib.sha256(data).hexdigest()


def _model_bytes(model: bytes | str | Path) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, Path)):
        path = Path(model)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no such ONNX file: {path}; check the path") from None
        except OSError as e:
            raise InvalidArgument(f"cannot read the ONNX file {path}: {e.strerror}") from None
    raise InvalidArgument(
        f"save_onnx takes the model's bytes or a path to a .onnx file, got {type(model).__name__}; "
        "for a torch model, torch.onnx.export(...) to a file and pass its path"
    )
