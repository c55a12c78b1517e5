"""The model registry, its error messages and the docstring examples."""

from __future__ import annotations

import doctest
import importlib

import pytest

import signdb.ml
from signdb.errors import InvalidArgument
from signdb.ml import MODELS, build_model, hyperparameter_names


def test_registry_names_match_model_names() -> None:
    assert {"logreg", "softmax", "mlp"} <= set(MODELS)
    for name, cls in MODELS.items():
        assert cls.name == name


def test_public_api_is_all() -> None:
    public = {n for n in vars(signdb.ml) if not n.startswith("_")}
    assert set(signdb.ml.__all__) <= public
    for name in ("MODELS", "build_model", "LogisticRegression", "SoftmaxRegression"):
        assert name in signdb.ml.__all__


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown model 'svm'; choose one of .*logreg"):
        build_model("svm")


def test_unknown_hyperparameter_lists_accepted_ones() -> None:
    with pytest.raises(InvalidArgument) as info:
        build_model("logreg", lr=0.1, hidden=(3,))
    message = str(info.value)
    assert "does not accept hyperparameter(s) hidden" in message
    assert "accepted: batch_size, iterations, lr, seed" in message


def test_hyperparameters_round_trip_through_get_params() -> None:
    for name in ("logreg", "softmax", "mlp"):
        cls = MODELS[name]
        params = build_model(name).get_params()
        assert sorted(params) == hyperparameter_names(cls)
        assert build_model(name, **params).get_params() == params


@pytest.mark.parametrize("module", ["__init__", "optim", "losses", "logreg", "softmax", "mlp"])
def test_docstring_examples_run(module: str) -> None:
    name = "signdb.ml" if module == "__init__" else f"signdb.ml.{module}"
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


@pytest.mark.parametrize("name", ["logreg", "softmax", "mlp"])
def test_model_classes_document_examples(name: str) -> None:
    assert "Examples" in (MODELS[name].__doc__ or "")
