"""numpy classifiers, scikit-learn shaped, and the registry ``signdb train --model`` reads.

No SQL here: models see numpy arrays only (see :mod:`signdb.ml.base`).
"""

from signdb.ml.base import Classifier, StepResult
from signdb.ml.cnn import ConvNet
from signdb.ml.logreg import LogisticRegression
from signdb.ml.mlp import MLPClassifier
from signdb.ml.registry import (
    ENGINES,
    MODELS,
    build_model,
    model_class,
    model_names,
    parse_param,
)
from signdb.ml.softmax import SoftmaxRegression

__all__ = [
    "ENGINES",
    "MODELS",
    "Classifier",
    "ConvNet",
    "LogisticRegression",
    "MLPClassifier",
    "SoftmaxRegression",
    "StepResult",
    "build_model",
    "model_class",
    "model_names",
    "parse_param",
]
