"""Evaluation: a stored model's predictions, TP/FP/TN/FN rows and headline metrics."""

from signdb.evaluation.compare import CompareResult, compare
from signdb.evaluation.service import EvaluationResult, evaluate, predict_files, score_split

__all__ = [
    "CompareResult",
    "EvaluationResult",
    "compare",
    "evaluate",
    "predict_files",
    "score_split",
]
