"""The one evaluation of train, evaluate and ensemble: predictions and a decision policy in; metrics with intervals,
plots, files and trackers out.

The policy (skinclf.metrics.decisions) was chosen on the labelled ``sample`` (the model's validation, or a clinic's
own sample); the ``test`` predictions are what is evaluated. Both are taken at the policy's temperature. The figures
come from :mod:`skinclf.metrics` (arrays and tables in), the images of the most confident errors from the data they
were predicted on, as the model saw them. Every command writes the same :class:`RunRecord` into metrics.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pytorch_lightning.loggers import Logger

from skinclf.atomic import write_json
from skinclf.data.color import SKIN_TONE_COLUMN, SKIN_TONE_METHOD, skin_tones
from skinclf.data.dataset import eval_dataset
from skinclf.data.preprocessing import eval_transform
from skinclf.errors import SkinclfError, examples
from skinclf.explain import Explainer, explain_images, overlay
from skinclf.metrics.calibration import expected_calibration_error
from skinclf.metrics.decisions import DecisionPolicy, ThresholdRule
from skinclf.metrics.diagnosis import diagnosis_columns, diagnosis_figures
from skinclf.metrics.figures import evaluate
from skinclf.metrics.outputs import Errors, confident_errors, save_error_figure, write_curves, write_predictions
from skinclf.metrics.plots import plot_confusion_matrix, plot_risk_coverage
from skinclf.metrics.referral import referral_figures
from skinclf.metrics.subgroups import audit, subgroup_values
from skinclf.rendering import write_reports
from skinclf.saliency import saliency_checks
from skinclf.schema import EvaluationSettings, Preprocessing
from skinclf.tracking import build_loggers, log_results


@dataclass(frozen=True)
class ImagesAsSeen:
    """How the evaluated model saw the test images: the folder their paths are relative to, its preprocessing, and
    what maps where it looked (None where none can be made), for the error gallery and, with explain_every_image,
    for every test image (explanations/, and the column explanation of predictions_test.csv); with a mask_column
    (the column that names each image's lesion mask, relative to root as the image paths are), the maps are
    checked against plain guesses."""

    root: Path
    preprocessing: Preprocessing
    explainer: Explainer | None = None
    explain_every_image: bool = False
    mask_column: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """metrics.json's ``run``: who the model is (as its checkpoint, or an ensemble, records it), what was evaluated,
    with which settings, and the decision policy; for a training run, its checkpoint and how it was chosen."""

    model: dict[str, Any]
    evaluated_on: str
    evaluation: EvaluationSettings
    policy: DecisionPolicy
    checkpoint: str | None = None
    checkpoint_choice: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        facts = {"checkpoint": self.checkpoint, "checkpoint_choice": self.checkpoint_choice}
        return {
            **self.model,
            **{key: value for key, value in facts.items() if value is not None},
            "evaluated_on": self.evaluated_on,
            "thresholds_chosen_on": self.policy.chosen_on,
            "decision_policy": self.policy.record(),
            "evaluation": dataclasses.asdict(self.evaluation),
        }


def error_images(seen: ImagesAsSeen, test: pd.DataFrame) -> Errors:
    """The most confident errors on test with their images as the model saw them, each beside its map's overlay."""
    errors = {}
    for kind, rows in confident_errors(test).items():
        dataset = eval_dataset(seen.preprocessing, seen.root, rows, tolerate_unreadable=True)
        crops = [dataset[i]["image"] for i in range(len(rows))]
        images = [crop.permute(1, 2, 0).numpy() for crop in crops]
        if seen.explainer is not None and crops:
            maps = seen.explainer.maps(torch.stack(crops), rows)
            gap = np.full((images[0].shape[0], 2, 3), 255, np.uint8)
            images = [np.hstack([image, gap, overlay(image, heat)]) for image, heat in zip(images, maps, strict=True)]
        errors[kind] = (rows, images)
    return errors


def evaluation_figures(
    validation: pd.DataFrame, test: pd.DataFrame, settings: EvaluationSettings, rule: ThresholdRule
) -> dict:
    """metrics.json's figures: of val (which chooses the thresholds) and of test, by subgroup and diagnosis too."""
    metrics = evaluate(
        validation["probability"].to_numpy(),
        validation["label"].to_numpy(),
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        settings.target_recalls,
        settings.bootstrap,
        rule,
    )
    for split, table in (("val", validation), ("test", test)):
        if table["label"].nunique() == 2:
            metrics[f"{split}/ece"] = expected_calibration_error(table["probability"], table["label"])
    if settings.subgroups:
        edges = settings.age_edges
        metrics["subgroups"] = audit(
            validation, test, settings.subgroups, settings.target_recalls, settings.bootstrap, edges, rule
        )
    if diagnosis_columns(test) and "diagnosis" in test.columns:  # task=diagnosis, on images whose diagnosis is known
        metrics["diagnosis"] = diagnosis_figures(test)
    return metrics


def calibration_record(policy: DecisionPolicy, before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> dict:
    """What metrics.json records of the temperature: where it was fitted, and each split's ECE before and after."""
    record = {"method": "temperature", "temperature": policy.temperature, "fitted_on": policy.chosen_on}
    for split, table in before.items():
        if table["label"].nunique() == 2:
            record[f"{split}/ece_before"] = expected_calibration_error(table["probability"], table["label"])
            record[f"{split}/ece_after"] = expected_calibration_error(after[split]["probability"], table["label"])
    return record


def lesion_crops(seen: ImagesAsSeen, rows: pd.DataFrame) -> tuple[torch.Tensor, np.ndarray]:
    """The images of the rows as the model saw them (N, 3, crop, crop), and their lesion masks cut alike."""
    dataset = eval_dataset(seen.preprocessing, seen.root, rows)
    transform = eval_transform(seen.preprocessing)
    masks = []
    for name in rows[seen.mask_column]:
        mask = np.repeat(np.asarray(Image.open(seen.root / name).convert("L"))[..., None], 3, axis=2)
        masks.append(transform(image=mask)["image"][0].numpy() > 127)
    return torch.stack([dataset[i]["image"] for i in range(len(rows))]), np.stack(masks)


def explanation_checks(seen: ImagesAsSeen, test: pd.DataFrame) -> dict | None:
    """The maps of the malignant test images that have a lesion mask, checked against plain guesses."""
    if seen.mask_column is None or seen.explainer is None:
        return None
    if seen.mask_column not in test.columns:
        raise SkinclfError(
            f"explain.mask_column={seen.mask_column}: the evaluated images have no such column (they have "
            f"{examples([c for c in test.columns if c not in ('path', 'label', 'probability')])})"
        )
    names = test[seen.mask_column].fillna("").astype(str)
    rows = test[(test["label"] == 1) & (names != "")]
    if rows.empty:
        return None
    crops, masks = lesion_crops(seen, rows)
    return saliency_checks(seen.explainer, crops, masks, rows)


def with_skin_tone(test: pd.DataFrame, settings: EvaluationSettings, seen: ImagesAsSeen) -> pd.DataFrame:
    """The test predictions with the estimated skin tone of each image, where the audit asks for it."""
    if SKIN_TONE_COLUMN not in settings.subgroups or SKIN_TONE_COLUMN in test.columns:
        return test
    return test.assign(**{SKIN_TONE_COLUMN: skin_tones(seen.root, test["path"].tolist())})


def with_explanations(test: pd.DataFrame, seen: ImagesAsSeen, folder: Path) -> pd.DataFrame:
    """The test predictions with the path of each image's heatmap, written into folder, where asked for."""
    if not seen.explain_every_image or seen.explainer is None:
        return test
    return test.assign(explanation=explain_images(seen.explainer, seen.root, test, seen.preprocessing, folder))


def write_results(
    folder: Path,
    record: RunRecord,
    predictions: dict[str, pd.DataFrame],
    seen: ImagesAsSeen,
    loggers: list[Logger],
    step: int = 0,
    extend: Callable[[dict], dict] | None = None,
    training: pd.DataFrame | None = None,
) -> dict:
    """Evaluate the ``val`` (the sample the policy was chosen on) and ``test`` predictions at the policy's
    temperature; write metrics.json, the predictions, the plots, the error gallery and the reports (report.html,
    report.md) into folder; send them to the loggers. ``extend``: what the caller adds to metrics.json, given its
    figures (an external evaluation's transfer); ``training``: the images the model trained on, for the model card.
    Returns metrics.json's contents."""
    settings, policy = record.evaluation, record.policy
    folder.mkdir(parents=True, exist_ok=True)
    uncalibrated = predictions
    predictions = {split: policy.calibrated(table) for split, table in predictions.items()}
    test = with_explanations(with_skin_tone(predictions["test"], settings, seen), seen, folder)
    predictions["test"] = test
    metrics = {"run": record.as_dict(), **evaluation_figures(predictions["val"], test, settings, policy.rule)}
    if policy.temperature is not None:
        metrics["calibration"] = calibration_record(policy, uncalibrated, predictions)
    if SKIN_TONE_COLUMN in settings.subgroups:
        metrics["skin_tone"] = {"column": SKIN_TONE_COLUMN, "how": SKIN_TONE_METHOD}
    referral = referral_figures(test, policy)
    if referral is not None:
        metrics["referral"] = referral
        plot_risk_coverage(referral, folder / "risk_coverage.png", f"{record.model.get('name', '')}: referral")
    checks = explanation_checks(seen, test)
    if checks is not None:
        metrics["explanation_checks"] = checks
    if extend is not None:
        metrics.update(extend(metrics))
    if training is not None:
        metrics["training_data"] = training_summary(training, settings)
    name = record.model.get("name", "")
    if "diagnosis" in metrics:
        plot_confusion_matrix(metrics["diagnosis"], folder / "confusion_matrix.png", name)
    errors = error_images(seen, test)
    write_predictions(folder, predictions)
    write_curves(folder, predictions, metrics, name, uncalibrated["test"] if policy.temperature is not None else None)
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
