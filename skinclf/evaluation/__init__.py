"""The one evaluation of a trained model (skinclf.evaluation.evaluation), the test images as it saw them, and the
checks of where it looked."""

from skinclf.evaluation.evaluation import Evaluation, RunRecord, evaluation_loggers

__all__ = ["Evaluation", "RunRecord", "evaluation_loggers"]
