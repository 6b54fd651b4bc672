"""The one evaluation step of train, evaluate and ensemble: predictions in; metrics with intervals, plots,
files and trackers out.

Validation predictions choose the thresholds, test predictions are what is evaluated. The figures
come from :mod:`skinclf.evaluation` (arrays and tables in), the images of the most confident errors
from the data they were predicted on, as the model saw them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pytorch_lightning.loggers import Logger

from skinclf.atomic import write_json
from skinclf.data.dataset import LesionDataset
from skinclf.evaluation.diagnosis import diagnosis_columns, diagnosis_figures, plot_confusion_matrix
from skinclf.evaluation.metrics import evaluate
from skinclf.evaluation.outputs import Errors, confident_errors, save_error_figure, write_curves, write_predictions
from skinclf.evaluation.subgroups import audit
from skinclf.schema import EvaluationSettings
from skinclf.training.tracking import build_loggers, log_results


def error_images(root: Path, transform: Any, test: pd.DataFrame) -> Errors:
    """The most confident errors on test with their images, as the model saw them."""
    errors = {}
    for kind, rows in confident_errors(test).items():
        dataset = LesionDataset(root, rows, transform, tolerate_unreadable=True)
        errors[kind] = (rows, [dataset[i]["image"].permute(1, 2, 0).numpy() for i in range(len(rows))])
    return errors


def figures(validation: pd.DataFrame, test: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """metrics.json's figures: of val (which chooses the thresholds) and of test, by subgroup and diagnosis too."""
    metrics = evaluate(
        validation["probability"].to_numpy(),
        validation["label"].to_numpy(),
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        settings.target_recalls,
        settings.bootstrap,
    )
    if settings.subgroups:
        metrics["subgroups"] = audit(
            validation, test, settings.subgroups, settings.target_recalls, settings.bootstrap, settings.age_edges
        )
    if diagnosis_columns(test):  # task=diagnosis
        metrics["diagnosis"] = diagnosis_figures(test)
    return metrics


def evaluation_step(
    folder: Path,
    predictions: dict[str, pd.DataFrame],
    settings: EvaluationSettings,
    run_info: dict[str, Any],
    images: tuple[Path, Any],
    loggers: list[Logger],
    step: int = 0,
) -> dict:
    """Evaluate the ``val`` and ``test`` predictions; write metrics.json, the predictions, the plots and the error
    gallery into folder; send them to the loggers. ``images``: the root the test paths are relative to, and the
    transform the model saw them through. Returns metrics.json's contents."""
    val, test = predictions["val"], predictions["test"]
    metrics = {"run": run_info, **figures(val, test, settings)}
    name = run_info.get("name", "")
    if "diagnosis" in metrics:
        plot_confusion_matrix(metrics["diagnosis"], folder / "confusion_matrix.png", name)
    errors = error_images(*images, test)
    write_predictions(folder, predictions)
    write_curves(folder, predictions, metrics, name)
    save_error_figure(errors, folder / "errors.png")
    write_json(folder / "metrics.json", metrics)
    log_results(loggers, metrics, predictions, errors, step, folder)
    return metrics


def evaluation_loggers(configs: dict[str, Any], folder: Path, params: dict[str, Any]) -> list[Logger]:
    """The loggers an evaluation (evaluate, ensemble) logs to as a run of its own, given its params."""
    loggers = build_loggers(configs, folder)
    for logger in loggers:
        logger.log_hyperparams(params)
    return loggers
