"""Calibration: the expected calibration error, and temperature scaling (``evaluation.calibration=temperature``).

Temperature scaling (Guo et al., ICML 2017) divides a model's logits by one number T, fitted on the
validation predictions to minimise their negative log-likelihood: T > 1 softens an over-confident
model, T < 1 sharpens an under-confident one. The ranking of a binary model's scores is unchanged
(its AUROC, and the operating points' recall and precision), but the probabilities come to mean
what they say. For a diagnosis head, the diagnoses' logits are divided by T before the softmax,
and the probability of malignancy is again the malignant diagnoses' sum.

The logits are recovered from the stored probabilities (logit(p) for one logit, log p for a
softmax, which softmax takes back to the same probabilities), so that T can be fitted wherever the
validation predictions are: in training, evaluate, predict and export alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import binary_calibration_error

from skinclf.metrics.diagnosis import PROBABILITY_PREFIX, diagnosis_columns

#: Bins of the expected calibration error (and of the reliability plot).
CALIBRATION_BINS = 10
#: A probability of malignancy is kept this far from 0 and 1 before its logit is taken (float32 keeps no more of
#: 1 - p); a diagnosis' probability is kept above TINY before its log is.
EPSILON = 1e-7
TINY = 1e-30
#: The temperatures searched, as log T (T from about 0.01 to 150).
LOG_TEMPERATURE_RANGE = (-4.6, 5.0)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The expected calibration error of the probability of malignancy, in CALIBRATION_BINS equal-width bins."""
    scores, truth = torch.tensor(np.asarray(probabilities, float)), torch.tensor(np.asarray(labels, int))
    return float(binary_calibration_error(scores, truth, n_bins=CALIBRATION_BINS))


def logits_of(probabilities: np.ndarray) -> np.ndarray:
    """logit(p): the one logit a probability of malignancy came from."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _diagnosis_logits(predictions: pd.DataFrame, classes: list[str]) -> np.ndarray:
    probabilities = predictions[[PROBABILITY_PREFIX + c for c in classes]].to_numpy(np.float64)
    return np.log(np.clip(probabilities, TINY, 1))


def fit_temperature(validation: pd.DataFrame) -> float:
    """The temperature that minimises the negative log-likelihood of the validation predictions: of the true
    diagnosis, for a diagnosis head (columns probability_<diagnosis> and diagnosis), else of the label."""
    classes = diagnosis_columns(validation)
    if classes:
        logits = _diagnosis_logits(validation, classes)
        truth = validation["diagnosis"].map({c: i for i, c in enumerate(classes)}).to_numpy()

        def loss(log_temperature: float) -> float:
            probabilities = _softmax(logits / np.exp(log_temperature))
            return -float(np.mean(np.log(np.clip(probabilities[np.arange(len(truth)), truth], TINY, 1))))

    else:
        logits, labels = logits_of(validation["probability"]), validation["label"].to_numpy(np.float64)

        def loss(log_temperature: float) -> float:
            scaled = logits / np.exp(log_temperature)
            return float(np.mean(np.logaddexp(0, scaled) - labels * scaled))  # binary cross-entropy of the logits

    fitted = minimize_scalar(loss, bounds=LOG_TEMPERATURE_RANGE, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(fitted.x))


def scaled(predictions: pd.DataFrame, temperature: float, malignant: list[str]) -> pd.DataFrame:
    """The predictions with their probabilities at the temperature (the malignant diagnoses' for malignancy)."""
    classes = diagnosis_columns(predictions)
    result = predictions.copy()
    if classes:
        probabilities = _softmax(_diagnosis_logits(predictions, classes) / temperature)
        for i, name in enumerate(classes):
            result[PROBABILITY_PREFIX + name] = probabilities[:, i]
        result["probability"] = probabilities[:, [classes.index(m) for m in malignant]].sum(axis=1)
    else:
        result["probability"] = 1 / (1 + np.exp(-logits_of(predictions["probability"]) / temperature))
    return result
