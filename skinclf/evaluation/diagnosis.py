"""Figures of task=diagnosis beside the binary ones: one-vs-rest AUROC per diagnosis, balanced accuracy, confusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from skinclf.evaluation.curves import auroc, rank
from skinclf.evaluation.plots import save_figure

#: Prefix of the prediction columns that hold the probability of each diagnosis.
PROBABILITY_PREFIX = "probability_"


def diagnosis_columns(predictions: pd.DataFrame) -> list[str]:
    """The diagnoses whose probabilities a prediction table holds, in the head's order."""
    return [c.removeprefix(PROBABILITY_PREFIX) for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]


def diagnosis_figures(test: pd.DataFrame) -> dict:
    """metrics.json's ``diagnosis``: per diagnosis its images and one-vs-rest AUROC, balanced accuracy, confusions.

    ``test`` holds the true ``diagnosis`` and the ``probability_<diagnosis>`` of each diagnosis.
    """
    classes = diagnosis_columns(test)
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
        "classes": classes,
        "per_diagnosis": per_class,
        "balanced_accuracy": float(np.mean(recalls)),
        "confusion_matrix": confusion.tolist(),
        "confusion_matrix_meaning": "rows: true diagnosis, columns: the most probable one, in the order of classes",
    }


def plot_confusion_matrix(figures: dict, path: Path, title: str) -> Path:
    """The confusion matrix of the test diagnoses, each row as shares of its true diagnosis."""
    classes, counts = figures["classes"], np.array(figures["confusion_matrix"])
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 1.8), layout="constrained")
    axis = figure.subplots()
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if shares[row, column] > 0.5 else "black"
        axis.text(
            column, row, f"{count}\n{shares[row, column]:.0%}", ha="center", va="center", fontsize=8, color=colour
        )
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("most probable diagnosis")
    axis.set_ylabel("true diagnosis")
    axis.set_title(f"{title} (balanced accuracy {figures['balanced_accuracy']:.3f})")
    return save_figure(figure, path)
