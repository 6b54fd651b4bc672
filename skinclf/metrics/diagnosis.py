"""Figures of task=diagnosis beside the binary ones: one-vs-rest AUROC per diagnosis, balanced accuracy, confusions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinclf.metrics.curves import auroc, rank

#: Prefix of the prediction columns that hold the probability of each diagnosis.
PROBABILITY_PREFIX = "probability_"


def diagnosis_columns(predictions: pd.DataFrame) -> list[str]:
    """The diagnoses whose probabilities a prediction table holds, in the head's order."""
    return [c.removeprefix(PROBABILITY_PREFIX) for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]


def diagnosis_figures(test: pd.DataFrame) -> dict:
    """metrics.json's ``diagnosis``: per diagnosis its images and one-vs-rest AUROC, balanced accuracy, confusions.

    ``test`` holds the true ``diagnosis`` and the ``probability_<diagnosis>`` of each diagnosis; rows of a
    diagnosis the head does not know (an external set's) are counted under ``unknown_diagnoses``, not scored.
    """
    classes = diagnosis_columns(test)
    known = test["diagnosis"].isin(classes)
    unknown = test.loc[~known, "diagnosis"].astype(str).value_counts().to_dict()
    test = test[known]
    probabilities = test[[PROBABILITY_PREFIX + c for c in classes]].to_numpy()
    truth = test["diagnosis"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        present = int((truth == i).sum())
        area = auroc(rank(probabilities[:, i], truth == i))[0] if 0 < present < len(truth) else np.nan
        per_class[name] = {"images": present, "auroc_one_vs_rest": None if np.isnan(area) else float(area)}
    recalls = [confusion[i, i] / confusion[i].sum() for i in range(len(classes)) if confusion[i].sum()]
    return {
        **({"unknown_diagnoses": unknown} if unknown else {}),
        "classes": classes,
        "per_diagnosis": per_class,
        "balanced_accuracy": float(np.mean(recalls)),
        "confusion_matrix": confusion.tolist(),
        "confusion_matrix_meaning": "rows: true diagnosis, columns: the most probable one, in the order of classes",
    }
