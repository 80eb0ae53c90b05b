"""Evaluate a model on a prepared dataset: predictions, metrics, breakdowns, a report with the worst errors."""

from texscribe.evaluation.evaluate import EvaluationResult, Row, evaluate, read_predictions, recompute

__all__ = ["EvaluationResult", "Row", "evaluate", "read_predictions", "recompute"]
