"""The one evaluation step of train, evaluate and ensemble: predictions in; metrics with intervals, plots,
files and trackers out.

Validation predictions choose the thresholds, test predictions are what is evaluated. The figures
come from :mod:`skinclf.metrics` (arrays and tables in), the images of the most confident errors
from the data they were predicted on, as the model saw them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pytorch_lightning.loggers import Logger

from skinclf.atomic import write_json
from skinclf.data.color import SKIN_TONE_COLUMN, SKIN_TONE_METHOD, Decoding, skin_tones
from skinclf.data.dataset import LesionDataset
from skinclf.explain import Explainer, explain_images, overlay
from skinclf.fitting.tracking import build_loggers, log_results
from skinclf.inference import eval_transform
from skinclf.metrics.calibration import calibrate, expected_calibration_error
from skinclf.metrics.diagnosis import diagnosis_columns, diagnosis_figures
from skinclf.metrics.figures import evaluate
from skinclf.metrics.outputs import Errors, confident_errors, save_error_figure, write_curves, write_predictions
from skinclf.metrics.plots import plot_confusion_matrix
from skinclf.metrics.subgroups import audit, subgroup_values
from skinclf.rendering import write_reports
from skinclf.schema import EvaluationSettings, Preprocessing


@dataclass(frozen=True)
class Seen:
    """How the evaluated model saw the test images: the folder their paths are relative to, its preprocessing, for
    a diagnosis head the malignant diagnoses (whose probabilities make the probability of malignancy), and what
    maps where it looked (None where none can be made), for the error gallery and, with explain_every_image, for
    every test image (explanations/, and the column explanation of predictions_test.csv)."""

    root: Path
    preprocessing: Preprocessing
    malignant_diagnoses: list[str] | None = None
    explainer: Explainer | None = None
    explain_every_image: bool = False


def error_images(seen: Seen, test: pd.DataFrame) -> Errors:
    """The most confident errors on test with their images as the model saw them, each beside its map's overlay."""
    transform, errors = eval_transform(seen.preprocessing), {}
    for kind, rows in confident_errors(test).items():
        decoding = Decoding.of(seen.preprocessing)
        dataset = LesionDataset(seen.root, rows, transform, tolerate_unreadable=True, decoding=decoding)
        crops = [dataset[i]["image"] for i in range(len(rows))]
        images = [crop.permute(1, 2, 0).numpy() for crop in crops]
        if seen.explainer is not None and crops:
            maps = seen.explainer.maps(torch.stack(crops), rows)
            gap = np.full((images[0].shape[0], 2, 3), 255, np.uint8)
            images = [np.hstack([image, gap, overlay(image, heat)]) for image, heat in zip(images, maps, strict=True)]
        errors[kind] = (rows, images)
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
    for split, table in (("val", validation), ("test", test)):
        if table["label"].nunique() == 2:
            metrics[f"{split}/ece"] = expected_calibration_error(table["probability"], table["label"])
    if settings.subgroups:
        metrics["subgroups"] = audit(
            validation, test, settings.subgroups, settings.target_recalls, settings.bootstrap, settings.age_edges
        )
    if diagnosis_columns(test) and "diagnosis" in test.columns:  # task=diagnosis, on images whose diagnosis is known
        metrics["diagnosis"] = diagnosis_figures(test)
    return metrics


def calibrated(
    predictions: dict[str, pd.DataFrame], settings: EvaluationSettings, seen: Seen
) -> tuple[dict[str, pd.DataFrame], dict | None]:
    """The predictions at the temperature fitted on validation (evaluation.calibration=temperature), and what
    metrics.json records of it; as they are otherwise."""
    if settings.calibration == "none":
        return predictions, None
    validation, test = predictions["val"], predictions["test"]
    fitted_on = f"the validation predictions ({len(validation)} images)"
    calibration, new_validation, others = calibrate(validation, {"test": test}, seen.malignant_diagnoses, fitted_on)
    record = {"method": "temperature", "temperature": calibration.temperature, "fitted_on": fitted_on}
    for split, before, after in (("val", validation, new_validation), ("test", test, others["test"])):
        if before["label"].nunique() == 2:
            record[f"{split}/ece_before"] = expected_calibration_error(before["probability"], before["label"])
            record[f"{split}/ece_after"] = expected_calibration_error(after["probability"], after["label"])
    return {"val": new_validation, "test": others["test"]}, record


def with_skin_tone(test: pd.DataFrame, settings: EvaluationSettings, seen: Seen) -> pd.DataFrame:
    """The test predictions with the estimated skin tone of each image, where the audit asks for it."""
    if SKIN_TONE_COLUMN not in settings.subgroups or SKIN_TONE_COLUMN in test.columns:
        return test
    return test.assign(**{SKIN_TONE_COLUMN: skin_tones(seen.root, test["path"].tolist())})


def with_explanations(test: pd.DataFrame, seen: Seen, folder: Path) -> pd.DataFrame:
    """The test predictions with the path of each image's heatmap, written into folder, where asked for."""
    if not seen.explain_every_image or seen.explainer is None:
        return test
    return test.assign(explanation=explain_images(seen.explainer, seen.root, test, seen.preprocessing, folder))


def evaluation_step(
    folder: Path,
    predictions: dict[str, pd.DataFrame],
    settings: EvaluationSettings,
    run_info: dict[str, Any],
    seen: Seen,
    loggers: list[Logger],
    step: int = 0,
    extend: Callable[[dict], dict] | None = None,
    training: pd.DataFrame | None = None,
) -> dict:
    """Evaluate the ``val`` and ``test`` predictions; write metrics.json, the predictions, the plots, the error
    gallery and the reports (report.html, report.md) into folder; send them to the loggers. ``extend``: what the
    caller adds to metrics.json, given its figures (an external evaluation's transfer); ``training``: the images
    the model trained on, for the model card. Returns metrics.json's contents."""
    uncalibrated = predictions["test"]
    predictions, calibration = calibrated(predictions, settings, seen)
    predictions = {
        **predictions,
        "test": with_explanations(with_skin_tone(predictions["test"], settings, seen), seen, folder),
    }
    val, test = predictions["val"], predictions["test"]
    metrics = {"run": run_info, **figures(val, test, settings)}
    if calibration is not None:
        metrics["calibration"] = calibration
    if SKIN_TONE_COLUMN in settings.subgroups:
        metrics["skin_tone"] = {"column": SKIN_TONE_COLUMN, "how": SKIN_TONE_METHOD}
    if extend is not None:
        metrics.update(extend(metrics))
    if training is not None:
        metrics["training_data"] = training_summary(training, settings)
    name = run_info.get("name", "")
    if "diagnosis" in metrics:
        plot_confusion_matrix(metrics["diagnosis"], folder / "confusion_matrix.png", name)
    errors = error_images(seen, test)
    write_predictions(folder, predictions)
    write_curves(folder, predictions, metrics, name, uncalibrated if calibration is not None else None)
    save_error_figure(errors, folder / "errors.png")
    write_json(folder / "metrics.json", metrics)
    write_reports([folder], folder)
    log_results(loggers, metrics, predictions, errors, step, folder)
    return metrics


def training_summary(training: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """What a model card says of the training images: how many, how many malignant, and by each audited column
    the table has."""
    by_subgroup = {}
    for column in settings.subgroups:
        if column in training.columns:
            groups = training.assign(group=subgroup_values(training[column], column, settings.age_edges))
            counts = groups.groupby("group", observed=True)["label"].agg(["size", "sum"])
            by_subgroup[column] = {
                str(value): {"images": int(row["size"]), "malignant": int(row["sum"])}
                for value, row in counts.iterrows()
            }
    return {"images": len(training), "malignant": int(training["label"].sum()), "by_subgroup": by_subgroup}


def evaluation_loggers(configs: dict[str, Any], folder: Path, params: dict[str, Any]) -> list[Logger]:
    """The loggers an evaluation (evaluate, ensemble) logs to as a run of its own, given its params."""
    loggers = build_loggers(configs, folder)
    for logger in loggers:
        logger.log_hyperparams(params)
    return loggers
