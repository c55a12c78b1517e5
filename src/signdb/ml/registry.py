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
>>> type(build_model("cnn", engine="torch")).__name__
'TorchConvNet'
>>> build_model("logreg", engine="torch")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.InvalidArgument: --engine torch trains mlp and cnn; logreg runs on --engine numpy
"""

from __future__ import annotations

import json
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


#: The engines ``--engine`` accepts. The torch engine's classes are imported
#: only when asked for, so signdb runs without PyTorch installed.
ENGINES = ("numpy", "torch")


def model_class(name: str, engine: str = "numpy") -> type[Classifier]:
    """The class that trains model ``name`` on ``engine``."""
    if engine not in ENGINES:
        raise InvalidArgument(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    cls = MODELS.get(name)
    if cls is None:
        raise InvalidArgument(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    if engine == "numpy":
        return cls
    from signdb.ml.torchbase import require_torch
    from signdb.ml.torchnet import TORCH_MODELS

    if name not in TORCH_MODELS:
        raise InvalidArgument(
            f"--engine torch trains {' and '.join(sorted(TORCH_MODELS, reverse=True))}; "
            f"{name} runs on --engine numpy"
        )
    require_torch()
    return TORCH_MODELS[name]


def build_model(name: str, *, engine: str = "numpy", **hyperparams: Any) -> Classifier:
    """An unfitted model ``name`` with the given hyperparameters (others keep their defaults)."""
    cls = model_class(name, engine)
    accepted = cls.param_names()
    unknown = sorted(set(hyperparams) - set(accepted))
    if unknown:
        raise InvalidArgument(
            f"model {name!r} does not accept hyperparameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return cls(**hyperparams)


#: Hyperparameters whose value is a list of layer sizes. On a command line such a
#: list is written ``256-128`` (as ``--layers conv16-pool-dense64`` joins its layers),
#: so a sweep's choice of lists, ``choice:64,128,256-128``, needs no brackets and no
#: quotes in bash or zsh (zsh fails on an unmatched ``[64]`` glob).
LAYER_LISTS = ("hidden",)


def parse_param(name: str, raw: str) -> Any:
    """A hyperparameter's value from its command-line text: ``256-128`` (or ``256,128``)
    for a layer list, else JSON when it parses (``0.9``, ``true``), else the text.

    >>> parse_param("hidden", "256-128"), parse_param("hidden", "64"), parse_param("lr", "1e-3")
    ([256, 128], [64], 0.001)
    >>> parse_param("hidden", "[64, 32]"), parse_param("optimizer", "adam")
    ([64, 32], 'adam')
    >>> parse_param("hidden", "wide")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    signdb.errors.InvalidArgument: hidden takes layer sizes joined by '-', e.g. 256-128; got 'wide'
    """
    text = raw.strip()
    if name in LAYER_LISTS and not text.startswith("["):
        parts = text.replace(",", "-").split("-")
        if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise InvalidArgument(
                f"{name} takes layer sizes joined by '-', e.g. 256-128; got {raw!r}"
            )
        return [int(p) for p in parts]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
