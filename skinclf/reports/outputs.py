"""The files of an evaluation, each written by its own function: tables and arrays in, files out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from skinclf.core.atomic import atomic_path
from skinclf.reports.plots import plot_pr_curves, plot_reliability, plot_roc_curves
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


#: The height of each image of the error gallery, in pixels, and the room for each caption.
ERROR_CELL, CAPTION = 128, 16


def save_error_figure(errors: Errors, path: Path, count: int = ERROR_GRID_SIZE) -> Path:
    """The most confident errors as one PNG: a row of images per kind of error, each under its probability, the
    kind at the row's start. Drawn with Pillow: a matplotlib figure of 16 axes took half a second of every run."""
    cells = {
        kind: [
            Image.fromarray(image).resize((round(ERROR_CELL * image.shape[1] / image.shape[0]), ERROR_CELL))
            for image in images
        ]
        for kind, (_, images) in errors.items()
    }
    width = max([ERROR_CELL, *(c.width for row in cells.values() for c in row)])
    gallery = Image.new(
        "RGB", (count * (width + 4) + 4, CAPTION + len(errors) * (2 * CAPTION + ERROR_CELL + 4)), "white"
    )
    draw = ImageDraw.Draw(gallery)
    draw.text((4, 2), "most confident errors on test", fill="black")
    top = CAPTION
    for (kind, (rows, _)), images in zip(errors.items(), cells.values(), strict=True):
        draw.text((4, top + 2), kind, fill="black")
        for i, (image, probability) in enumerate(zip(images, rows["probability"], strict=False)):
            left = 4 + i * (width + 4)
            draw.text((left, top + CAPTION + 2), f"p = {probability:.3f}", fill="black")
            gallery.paste(image, (left, top + 2 * CAPTION))
        top += 2 * CAPTION + ERROR_CELL + 4
    with atomic_path(path) as partial:
        gallery.save(partial, format="PNG")
    return path
