"""Evaluation: streaming CZSL metrics, feasibility, and evaluating a model on a dataset."""

from .evaluate import choose_feasibility_threshold, evaluate_model, evaluation_setup
from .metrics import (
           CZSLMetrics,
           StreamingEvaluator,
           evaluate_scores,
           format_metrics_table,
)
from .score_files import MetricsInputError, load_metrics_inputs

__all__ = ["CZSLMetrics", "MetricsInputError", "StreamingEvaluator", "choose_feasibility_threshold", "evaluate_model",
           "evaluate_scores", "evaluation_setup", "format_metrics_table", "load_metrics_inputs"]
