"""numpy classifiers, looked up by the name ``signdb train --model`` takes.

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

import inspect
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


def hyperparameter_names(cls: type[Classifier]) -> list[str]:
    """Keyword arguments the model's constructor accepts, following ``**kwargs`` upwards."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {
            "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return sorted(names)


def build_model(name: str, **hyperparams: Any) -> Classifier:
    """An unfitted model ``name`` with the given hyperparameters (others keep their defaults)."""
    cls = MODELS.get(name)
    if cls is None:
        raise InvalidArgument(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    accepted = hyperparameter_names(cls)
    unknown = sorted(set(hyperparams) - set(accepted))
    if unknown:
        raise InvalidArgument(
            f"model {name!r} does not accept hyperparameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return cls(**hyperparams)


__all__ = [
    "ConvNet",
    "MODELS",
    "Classifier",
    "LogisticRegression",
    "MLPClassifier",
    "SoftmaxRegression",
    "build_model",
    "hyperparameter_names",
]
