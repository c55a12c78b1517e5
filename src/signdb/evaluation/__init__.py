"""Evaluation: a stored model's predictions, TP/FP/TN/FN rows and headline metrics."""

from signdb.evaluation.service import EvaluationResult, evaluate, predict_files, score_split

__all__ = ["EvaluationResult", "evaluate", "predict_files", "score_split"]
