"""What an evaluation leaves in its folder: metrics.json, the predictions, the curves and the most confident errors.

Shared by training (on its test split) and ``skinclf.evaluate``: the figures come from
:mod:`skinclf.evaluation` (arrays and tables in), the images of the errors from the data they
were predicted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from skinclf.atomic import write_json
from skinclf.data.dataset import LesionDataset
from skinclf.evaluation.diagnosis import diagnosis_columns, diagnosis_figures, plot_confusion_matrix
from skinclf.evaluation.metrics import evaluate
from skinclf.evaluation.outputs import Errors, confident_errors, save_error_figure, write_curves, write_predictions
from skinclf.evaluation.subgroups import audit
from skinclf.schema import EvaluationSettings


def error_images(root: Path, transform: Any, test: pd.DataFrame) -> Errors:
    """The most confident errors on test with their images, as the model saw them."""
    errors = {}
    for kind, rows in confident_errors(test).items():
        dataset = LesionDataset(root, rows, transform, tolerate_unreadable=True)
        errors[kind] = (rows, [dataset[i]["image"].permute(1, 2, 0).numpy() for i in range(len(rows))])
    return errors


def write_results(
    run_dir: Path,
    predictions: dict[str, pd.DataFrame],
    settings: EvaluationSettings,
    run_info: dict[str, Any],
    errors: Errors,
) -> dict:
    """The metrics of val (which chooses the thresholds) and test predictions, and every file of an evaluation."""
    val, test = predictions["val"], predictions["test"]
    metrics = {
        "run": run_info,
        **evaluate(
            val["probability"].to_numpy(),
            val["label"].to_numpy(),
            test["probability"].to_numpy(),
            test["label"].to_numpy(),
            settings.target_recalls,
            settings.bootstrap,
        ),
    }
    if settings.subgroups:
        metrics["subgroups"] = audit(
            val, test, settings.subgroups, settings.target_recalls, settings.bootstrap, settings.age_edges
        )
    if diagnosis_columns(test):  # task=diagnosis
        metrics["diagnosis"] = diagnosis_figures(test)
        plot_confusion_matrix(metrics["diagnosis"], run_dir / "confusion_matrix.png", run_info.get("name", ""))
    write_predictions(run_dir, predictions)
    write_curves(run_dir, predictions, metrics, run_info.get("name", ""))
    save_error_figure(errors, run_dir / "errors.png")
    write_json(run_dir / "metrics.json", metrics)
    return metrics
