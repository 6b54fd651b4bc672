"""The decision policy: what a trained model decides with, for an evaluation setting.

For each target recall a threshold (malignant when the probability is at least it), chosen by a rule on labelled
predictions: the model's validation, or a clinic's own sample (``evaluation.threshold_source``); and, with
``evaluation.calibration=temperature``, the temperature fitted on the same predictions, the thresholds being chosen
on the calibrated ones. The end of training, evaluate, predict, export and ensemble all take their decisions from
:func:`choose_policy`; the bootstrap re-chooses each threshold by the same rule in every resample
(:func:`thresholds_by_rule`, in :mod:`skinclf.metrics.figures`), so that an interval carries the choice's uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skinclf.metrics.calibration import fit_temperature, scaled
from skinclf.metrics.curves import RankedCounts, best_precision_at_recall, rank
from skinclf.schema import EvaluationSettings

#: How each rule chooses a threshold, in words for metrics.json and the reports.
RULES = {
    "validation_precision": "the highest precision among thresholds whose recall reaches the target",
    "given": "given on the command line",
}


#: What a model's own validation predictions are called where a policy says what it was chosen on.
VALIDATION = "the model's validation split"


def recall_key(target_recall: float) -> str:
    """'0.999' for 0.999: the suffix of metric names that belong to a target recall."""
    return f"{target_recall:g}"


def thresholds_by_rule(ranked: RankedCounts, target_recall: float, rule: str) -> np.ndarray:
    """The threshold for a target recall of each row of ranked predictions (NaN where none reaches it)."""
    return best_precision_at_recall(ranked, target_recall)[1]


@dataclass(frozen=True)
class DecisionPolicy:
    """A threshold per target recall (by recall_key), the rule that chose them, the temperature the probabilities are
    taken at (None: as the model gives them), and the labelled images they were chosen on."""

    thresholds: dict[str, float]
    rule: str
    temperature: float | None
    malignant_diagnoses: tuple[str, ...] | None
    chosen_on: str
    images: int
    malignant: int

    def calibrated(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """The predictions at the policy's temperature (a diagnosis head's diagnoses too)."""
        if self.temperature is None:
            return predictions
        return scaled(predictions, self.temperature, list(self.malignant_diagnoses or []))

    @property
    def operating_points(self) -> dict[str, float]:
        """Each threshold by its operating point's name: at_recall_<target>, or at_<threshold> for one given."""
        prefix = "at_" if self.rule == "given" else "at_recall_"
        return {prefix + key: threshold for key, threshold in self.thresholds.items()}

    def decisions(self, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """Malignant (True) or benign at each operating point, by its name."""
        return {name: probabilities >= threshold for name, threshold in self.operating_points.items()}

    def record(self) -> dict:
        """What metrics.json, the reports and an export's description say of it."""
        return {
            "rule": self.rule,
            "how": RULES[self.rule],
            "thresholds": self.thresholds,
            "temperature": self.temperature,
            "chosen_on": self.chosen_on,
            "images": self.images,
            "malignant": self.malignant,
        }


def choose_thresholds(sample: pd.DataFrame, target_recalls: Sequence[float], rule: str) -> dict[str, float]:
    """The threshold for each target recall, chosen by the rule on labelled (calibrated) predictions."""
    ranked = rank(sample["probability"].to_numpy(), sample["label"].to_numpy())
    return {recall_key(r): float(thresholds_by_rule(ranked, r, rule)[0]) for r in target_recalls}


def choose_policy(
    sample: pd.DataFrame, chosen_on: str, evaluation: EvaluationSettings, malignant_diagnoses: Sequence[str] | None
) -> DecisionPolicy:
    """The policy chosen on a labelled sample of the model's predictions (its thresholds on the sample at its
    temperature)."""
    temperature = fit_temperature(sample) if evaluation.calibration == "temperature" else None
    malignant = tuple(malignant_diagnoses) if malignant_diagnoses else None
    uncalibrated = DecisionPolicy({}, "validation_precision", temperature, malignant, chosen_on, 0, 0)
    thresholds = choose_thresholds(uncalibrated.calibrated(sample), evaluation.target_recalls, uncalibrated.rule)
    malignant_images = int(sample["label"].sum())
    return DecisionPolicy(
        thresholds, uncalibrated.rule, temperature, malignant, chosen_on, len(sample), malignant_images
    )


def policy_at(threshold: float, chosen_on: str) -> DecisionPolicy:
    """One threshold given by the user (predict's threshold=), at the model's own probabilities."""
    return DecisionPolicy({f"{threshold:g}": threshold}, "given", None, None, chosen_on, 0, 0)
