"""The model registry: the names ``signdb train --model`` takes, and how to build them.

Examples
--------
>>> {"logreg", "softmax", "mlp"} <= set(MODELS)
True
>>> build_model("mlp", hidden=(32,), lr=0.01).get_params()["hidden"]
(32,)
>>> build_model("svm")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.InvalidArgument: unknown model 'svm'; choose one of ...logreg, mlp, softmax
"""

from __future__ import annotations

from typing import Any

from signdb.errors import InvalidArgument
from signdb.ml.base import Classifier
from signdb.ml.cnn import ConvNet
from signdb.ml.logreg import LogisticRegression
from signdb.ml.mlp import MLPClassifier
from signdb.ml.softmax import SoftmaxRegression

MODELS: dict[str, type[Classifier]] = {
    cls.name: cls for cls in (LogisticRegression, SoftmaxRegression, MLPClassifier, ConvNet)
}


def model_names() -> list[str]:
    """The names ``--model`` accepts, simplest first; the CLI's choices come from here."""
    return list(MODELS)


def build_model(name: str, **hyperparams: Any) -> Classifier:
    """An unfitted model ``name`` with the given hyperparameters (others keep their defaults)."""
    cls = MODELS.get(name)
    if cls is None:
        raise InvalidArgument(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    accepted = cls.param_names()
    unknown = sorted(set(hyperparams) - set(accepted))
    if unknown:
        raise InvalidArgument(
            f"model {name!r} does not accept hyperparameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return cls(**hyperparams)
