"""The files of an evaluation, each written by its own function: tables and arrays in, files out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from skinclf.core.atomic import atomic_path
from skinclf.reports.plots import plot_pr_curves, plot_reliability, plot_roc_curves, save_figure
from skinclf.runs import PR_CURVE, RELIABILITY, ROC_CURVE, predictions_file

#: How many of the most confident misses of each kind the error figure shows.
ERROR_GRID_SIZE = 8

#: Kinds of confident error: rows of the test predictions, and their images as (H, W, 3) uint8 arrays.
Errors = dict[str, tuple[pd.DataFrame, list[np.ndarray]]]


def write_predictions(run_folder: Path, predictions: dict[str, pd.DataFrame]) -> None:
    """predictions_<split>.csv for each split."""
    for split, table in predictions.items():
        with atomic_path(run_folder / predictions_file(split)) as partial:
            table.to_csv(partial, index=False)


def write_curves(
    run_folder: Path,
    predictions: dict[str, pd.DataFrame],
    metrics: dict,
    title: str,
    uncalibrated_test: pd.DataFrame | None = None,
) -> None:
    """pr_curve.png and roc_curve.png of every split, and reliability.png of the test split (before and after
    calibration, when it was calibrated)."""
    curves = {
        f"{split} ({int(t['label'].sum())} malignant of {len(t)})": (t["probability"].to_numpy(), t["label"].to_numpy())
        for split, t in predictions.items()
    }
    plot_pr_curves(curves, run_folder / PR_CURVE, f"{title}: precision-recall", metrics["operating_points"])
    plot_roc_curves(curves, run_folder / ROC_CURVE, f"{title}: ROC")
    test = predictions["test"]
    reliability = {"model": test}
    if uncalibrated_test is not None:
        reliability = {"before calibration": uncalibrated_test, "after calibration": test}
    plot_reliability(
        {name: (t["probability"].to_numpy(), t["label"].to_numpy()) for name, t in reliability.items()},
        run_folder / RELIABILITY,
        f"{title}: test calibration",
    )


def confident_errors(test: pd.DataFrame, count: int = ERROR_GRID_SIZE) -> dict[str, pd.DataFrame]:
    """The malignant lesions scored lowest and the benign ones scored highest."""
    return {
        "malignant, scored lowest": test[test["label"] == 1].nsmallest(count, "probability"),
        "benign, scored highest": test[test["label"] == 0].nlargest(count, "probability"),
    }


def save_error_figure(errors: Errors, path: Path, count: int = ERROR_GRID_SIZE) -> Path:
    """The most confident errors as a PNG, each image with its probability.

    A regular grid of thumbnails, spaced by hand: Matplotlib's constrained layout measured each of its 16 axes and
    took half the figure's time."""
    height = 1.8 * len(errors) + 0.4
    figure = Figure(figsize=(1.5 * count, height))
    spacing = {"left": 0.03, "right": 0.995, "bottom": 0.02, "top": 1 - 0.55 / height, "wspace": 0.08, "hspace": 0.3}
    axes = figure.subplots(len(errors), count, squeeze=False, gridspec_kw=spacing)
    for axis_row, (kind, (rows, images)) in zip(axes, errors.items(), strict=True):
        axis_row[0].set_ylabel(kind, fontsize=8)
        for axis, image, probability in zip(axis_row, images, rows["probability"], strict=False):
            axis.imshow(image)
            axis.set_title(f"p = {probability:.3f}", fontsize=8)
        for axis in axis_row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle("most confident errors on test")
    return save_figure(figure, path, dpi=110)
