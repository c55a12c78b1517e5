"""Serving trained models: aliases, ONNX export, the Open Inference Protocol's core, logging.

The HTTP routes of ``signdb serve`` are thin adapters over :mod:`signdb.serving.service`;
the CLI's ``signdb models`` and ``signdb export`` over :mod:`~signdb.serving.aliases` and
:mod:`~signdb.serving.export`.
"""

from signdb.serving.aliases import list_models, remove_alias, set_alias, show_model
from signdb.serving.export import export_model, run_model
from signdb.serving.models import ServedModel, resolve_model
from signdb.serving.prediction_log import PredictionLog, check_fraction
from signdb.serving.protocol import error_body
from signdb.serving.service import (
    http_status,
    infer,
    invocations,
    model_metadata,
    model_ready,
    predict_uploads,
    server_metadata,
)

__all__ = [
    "PredictionLog",
    "ServedModel",
    "check_fraction",
    "error_body",
    "export_model",
    "http_status",
    "infer",
    "invocations",
    "list_models",
    "model_metadata",
    "model_ready",
    "predict_uploads",
    "remove_alias",
    "resolve_model",
    "run_model",
    "server_metadata",
    "set_alias",
    "show_model",
]
