"""The model registry, its error messages and the docstring examples."""

from __future__ import annotations

import doctest
import importlib

import pytest

import signdb.ml
from signdb.errors import InvalidArgument
from signdb.ml import MODELS, build_model, model_names


def test_registry_names_match_model_names() -> None:
    assert {"logreg", "softmax", "mlp"} <= set(MODELS)
    for name, cls in MODELS.items():
        assert cls.name == name


def test_public_api_is_exactly_all() -> None:
    modules = {n for n, v in vars(signdb.ml).items() if type(v).__name__ == "module"}
    public = {n for n in vars(signdb.ml) if not n.startswith("_")} - modules
    assert public == set(signdb.ml.__all__)


def test_cli_model_choices_come_from_the_registry() -> None:
    from signdb.cli.train_commands import train

    (option,) = [p for p in train.params if p.name == "model"]
    assert list(option.type.choices) == model_names() == list(MODELS)


def test_step_reports_cost_and_correct_count() -> None:
    import numpy as np

    from signdb.ml.base import StepResult

    X = np.zeros((4, 2, 2, 1), np.float32)
    X[2:] = 1.0
    for name in ("logreg", "softmax", "mlp"):
        model = build_model(name).initialize(X.shape[1:], [0, 1])
        result = model.train_step(X, np.array([0, 0, 1, 1]), 0)
        assert isinstance(result, StepResult)
        assert result.cost > 0 and result.correct is not None and 0 <= result.correct <= 4


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
        assert sorted(params) == cls.param_names()
        assert build_model(name, **params).get_params() == params


@pytest.mark.parametrize(
    "module", ["registry", "optim", "losses", "logreg", "softmax", "mlp", "metrics"]
)
def test_docstring_examples_run(module: str) -> None:
    name = f"signdb.ml.{module}"
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


@pytest.mark.parametrize("name", ["logreg", "softmax", "mlp"])
def test_model_classes_document_examples(name: str) -> None:
    assert "Examples" in (MODELS[name].__doc__ or "")
