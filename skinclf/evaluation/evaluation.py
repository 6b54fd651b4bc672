"""The one evaluation of a trained model: train, evaluate, ensemble and a run's left-out source all run it.

:class:`Evaluation` takes a trained model (skinclf.trained: a checkpoint, or an ensemble) and labelled images: it
chooses the model's decision policy (skinclf.metrics.decisions; on its validation, or a clinic's own sample), predicts
the images (unless their predictions are given, as training makes them from its loaders and an ensemble from its
members'), adapts the model to them where asked (external images only), and computes every figure at the policy's
temperature (skinclf.metrics), then writes metrics.json (its ``run`` a :class:`RunRecord`), the predictions, plots,
the error gallery and the reports into the run folder and sends them to the trackers. On external images (any but
its run's own splits) it also names the images the model trained on that it meets again and says how it transferred.
The test images are decoded once after their predictions for all that looks at them (skinclf.evaluation.seen).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pytorch_lightning.loggers import Logger

from skinclf.config.schema import EvaluationSettings, ExplainSettings
from skinclf.core.atomic import write_json
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.color import SKIN_TONE_COLUMN, SKIN_TONE_METHOD
from skinclf.data.image_sets import Images
from skinclf.data.overlap import Hashed, Overlap, overlap
from skinclf.data.preprocessing import eval_transform
from skinclf.data.splits import validation_reach
from skinclf.evaluation.saliency import saliency_checks
from skinclf.evaluation.seen import ImagesAsSeen, LookedAt, look_at
from skinclf.metrics.calibration import expected_calibration_error
from skinclf.metrics.decisions import VALIDATION, DecisionPolicy, ThresholdRule, recall_key, what_decides
from skinclf.metrics.diagnosis import diagnosis_columns, diagnosis_figures
from skinclf.metrics.figures import evaluate
from skinclf.metrics.referral import referral_figures
from skinclf.metrics.shift import set_alarm
from skinclf.metrics.subgroups import audit, subgroup_values
from skinclf.metrics.transfer import transfer
from skinclf.models.adaptation import GUARD
from skinclf.reports import write_reports
from skinclf.reports.outputs import Errors, confident_errors, save_error_figure, write_curves, write_predictions
from skinclf.reports.plots import plot_confusion_matrix, plot_risk_coverage
from skinclf.runs import CONFUSION_MATRIX, ERRORS, METRICS, RISK_COVERAGE
from skinclf.tracking import build_loggers, log_results
from skinclf.trained import TrainedModel
from skinclf.trained.explain import evaluation_explainer, overlay
from skinclf.trained.inference import Inference


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


@dataclass(frozen=True)
class Evaluation:
    """How a trained model is evaluated: its evaluation and explain settings, how it predicts (None where its
    predictions are given, as an ensemble's are), the trackers the results go to, and where its run's data now is
    (data.root, for its validation split where it stores none)."""

    model: TrainedModel
    settings: EvaluationSettings
    explain: ExplainSettings
    inference: Inference | None
    loggers: list[Logger] = field(default_factory=list)
    run_root: str | None = None

    def run(
        self,
        images: Images,
        folder: Path,
        *,
        external: bool = False,
        left_out: str | None = None,
        test: pd.DataFrame | None = None,
        checkpoint: str | None = None,
        checkpoint_choice: dict[str, Any] | None = None,
        step: int = 0,
    ) -> dict:
        """Evaluate the model on the labelled images into folder; returns metrics.json's contents. ``external``:
        images other than its run's splits; ``left_out``: the source a run left out, these being its images
        (cv.leave_out=source); ``test``: their predictions where already made; ``checkpoint`` and
        ``checkpoint_choice``: what the record says of the checkpoint; ``step``: the trackers' step."""
        settings = self.settings
        trained_on = self.model.training_images()
        copies = training_copies(trained_on, images) if external else None
        if copies is not None and settings.exclude_training_duplicates and copies.evaluated:
            images = without(images, copies.evaluated)
        policy, sample = self.model.decision_policy(settings, self.inference, self.run_root)
        adaptation = self.adapted(images, trained_on.table) if settings.adapt != "none" else None
        if test is None:
            test = self.model.predict(images, self.inference, settings.tta)
        record = RunRecord(self.model.identity, images.described, settings, policy, checkpoint, checkpoint_choice)
        found = results(record, {"val": sample, "test": test}, self.seen(images.root), trained_on.table, folder)
        shift = set_alarm(self.model.validation(self.inference, settings.tta, self.run_root), test)
        if shift is not None:
            found.metrics["shift"] = shift.record()
        if copies is not None:
            found.metrics["overlap_with_training"] = copies.record(settings.exclude_training_duplicates)
            found.metrics["transfer"] = transfer(found.metrics, self.model.internal_run())
            found.metrics.update({"adaptation": adaptation} if adaptation is not None else {})
            found.metrics.update({"left_out_source": left_out} if left_out is not None else {})
        write_results(folder, found)
        log_results(self.loggers, found.metrics, found.predictions, found.errors, step, folder)
        return found.metrics

    def seen(self, root: Path) -> ImagesAsSeen:
        """How the model sees images below root: its maps (its classifiers', averaged) for the error gallery, and
        for every test image with explain.enabled."""
        explainer = evaluation_explainer(self.model.classifiers, self.explain, self.settings.tta)
        masks = self.explain.mask_column if self.explain.enabled else None
        return ImagesAsSeen(root, self.model.preprocessing, explainer, self.explain.enabled, masks)

    def adapted(self, images: Images, training: pd.DataFrame) -> dict:
        """evaluation.adapt=batchnorm: the model's batch-norm statistics re-estimated on the images (in memory), and
        what metrics.json records of it."""
        before = self.model.predict(images, self.inference, self.settings.tta)["probability"].to_numpy()
        share = float(training["label"].mean())
        layers = self.model.adapt_batchnorm(images, self.inference, before, share)
        return {
            "method": self.settings.adapt,
            "layers": layers,
            "images": len(images.table),
            "training_malignant_share": share,
            "estimated_malignant_share": float(before.mean()),
            "guard": GUARD,
        }


def training_copies(training: Images, images: Images) -> Overlap:
    """The evaluated images that are copies of the images the model trained on."""
    return overlap(Hashed.of(images.root, images.table), Hashed.of(training.root, training.table))


def without(images: Images, paths: set[str]) -> Images:
    kept = images.table[~images.table["path"].isin(paths)].reset_index(drop=True)
    return Images(images.root, kept, f"{images.described}, without {len(paths)} copies of training images")


def evaluation_figures(
    validation: pd.DataFrame,
    test: pd.DataFrame,
    settings: EvaluationSettings,
    rule: ThresholdRule,
    decided: list[float],
) -> dict:
    """metrics.json's figures: of val (which chooses the thresholds) and of test, by subgroup and diagnosis too;
    operating points only at the targets the policy decided."""
    metrics = evaluate(
        validation["probability"].to_numpy(),
        validation["label"].to_numpy(),
        test["probability"].to_numpy(),
        test["label"].to_numpy(),
        decided,
        settings.bootstrap,
        rule,
    )
    for split, table in (("val", validation), ("test", test)):
        if table["label"].nunique() == 2:
            metrics[f"{split}/ece"] = expected_calibration_error(table["probability"], table["label"])
    if settings.subgroups:
        edges = settings.age_edges
        metrics["subgroups"] = audit(validation, test, settings.subgroups, decided, settings.bootstrap, edges, rule)
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


def masked_rows(seen: ImagesAsSeen, test: pd.DataFrame) -> list[int]:
    """The malignant test images that have a lesion mask, whose maps are checked against plain guesses."""
    if seen.mask_column is None or seen.explainer is None:
        return []
    if seen.mask_column not in test.columns:
        raise SkinclfError(
            f"explain.mask_column={seen.mask_column}: the evaluated images have no such column (they have "
            f"{examples([c for c in test.columns if c not in ('path', 'label', 'probability')])})"
        )
    names = test[seen.mask_column].fillna("").astype(str).to_numpy()
    return [i for i in range(len(test)) if test["label"].iloc[i] == 1 and names[i] != ""]


def explanation_checks(seen: ImagesAsSeen, test: pd.DataFrame, rows: list[int], looked: LookedAt) -> dict | None:
    """The maps of the masked malignant test images checked against plain guesses (skinclf.evaluation.saliency)."""
    if not rows:
        return None
    transform = eval_transform(seen.preprocessing)
    masks = []
    for name in test[seen.mask_column].iloc[rows]:
        mask = np.repeat(np.asarray(Image.open(seen.root / name).convert("L"))[..., None], 3, axis=2)
        masks.append(transform(image=mask)["image"][0].numpy() > 127)
    crops = torch.stack([looked.crops[i] for i in rows])
    return saliency_checks(seen.explainer, crops, np.stack(masks), test.iloc[rows])


def error_images(seen: ImagesAsSeen, test: pd.DataFrame, looked: LookedAt) -> Errors:
    """The most confident errors on test with their images as the model saw them, each beside its map's overlay."""
    errors = {}
    for kind, rows in confident_errors(test).items():
        crops = [looked.crops[test.index.get_loc(label)] for label in rows.index]
        images = [crop.permute(1, 2, 0).numpy() for crop in crops]
        if seen.explainer is not None and crops:
            maps = seen.explainer.maps(torch.stack(crops), rows)
            gap = np.full((images[0].shape[0], 2, 3), 255, np.uint8)
            images = [np.hstack([image, gap, overlay(image, heat)]) for image, heat in zip(images, maps, strict=True)]
        errors[kind] = (rows, images)
    return errors


@dataclass(frozen=True)
class Results:
    """What an evaluation found: metrics.json's contents, the predictions at the policy's temperature (and the test
    predictions before it, where a temperature applies) and the error gallery."""

    metrics: dict
    predictions: dict[str, pd.DataFrame]
    uncalibrated_test: pd.DataFrame | None
    errors: Errors


def results(
    record: RunRecord, predictions: dict[str, pd.DataFrame], seen: ImagesAsSeen, training: pd.DataFrame, folder: Path
) -> Results:
    """Evaluate the ``val`` (the sample the policy was chosen on) and ``test`` predictions at the policy's
    temperature, looking at each test image once (its skin tone, its map into folder/explanations/ with explain, the
    error gallery's and the mask checks' crops). ``training``: the images the model trained on, for the model card."""
    settings, policy = record.evaluation, record.policy
    folder.mkdir(parents=True, exist_ok=True)
    calibrated = {split: policy.calibrated(table) for split, table in predictions.items()}
    test = calibrated["test"].reset_index(drop=True)
    skin_tone = SKIN_TONE_COLUMN in settings.subgroups and SKIN_TONE_COLUMN not in test.columns
    masked = masked_rows(seen, test)
    shown = {test.index.get_loc(label) for rows in confident_errors(test).values() for label in rows.index}
    looked = look_at(seen, test, folder, skin_tone, shown | set(masked))
    if looked.skin_tones is not None:
        test[SKIN_TONE_COLUMN] = looked.skin_tones
    if looked.explanations is not None:
        test["explanation"] = looked.explanations
    calibrated["test"] = test
    decided = [r for r in settings.target_recalls if recall_key(r) in policy.thresholds]
    figures = evaluation_figures(calibrated["val"], test, settings, policy.rule, decided)
    metrics = {"run": record.as_dict(), **figures}
    if policy.temperature is not None:
        metrics["calibration"] = calibration_record(policy, predictions, calibrated)
    if SKIN_TONE_COLUMN in settings.subgroups:
        metrics["skin_tone"] = {"column": SKIN_TONE_COLUMN, "how": SKIN_TONE_METHOD}
    referral = referral_figures(test, policy)
    if referral is not None:
        metrics["referral"] = referral
    checks = explanation_checks(seen, test, masked, looked)
    if checks is not None:
        metrics["explanation_checks"] = checks
    metrics["training_data"] = training_summary(training, settings)
    if policy.undecided:
        metrics["undecided"] = undecided_record(policy, int(training["label"].sum()))
    uncalibrated = predictions["test"] if policy.temperature is not None else None
    return Results(metrics, calibrated, uncalibrated, error_images(seen, test, looked))


def write_results(folder: Path, found: Results) -> None:
    """metrics.json, the predictions, the plots, the error gallery and the reports (report.html, report.md)."""
    metrics, name = found.metrics, found.metrics["run"].get("name", "")
    if "referral" in metrics:
        plot_risk_coverage(metrics["referral"], folder / RISK_COVERAGE, f"{name}: referral")
    if "diagnosis" in metrics:
        plot_confusion_matrix(metrics["diagnosis"], folder / CONFUSION_MATRIX, name)
    write_predictions(folder, found.predictions)
    write_curves(folder, found.predictions, metrics, name, found.uncalibrated_test)
    save_error_figure(found.errors, folder / ERRORS)
    write_json(folder / METRICS, metrics)
    write_reports([folder], folder)


def undecided_record(policy: DecisionPolicy, training_malignant: int) -> dict:
    """metrics.json's ``undecided``: each target the policy's sample could not decide, why, and what would decide
    it, naming settings that work for these counts (with validation as the sample, what more validation can do)."""
    cap = None
    if policy.chosen_on == VALIDATION:
        needed = max(u.needed for u in policy.undecided.values())
        cap = validation_reach(training_malignant + policy.malignant, needed)
    return {
        "operating_points": [{**dataclasses.asdict(u), "reason": u.reason} for u in policy.undecided.values()],
        "what_decides": what_decides(policy.rule, policy.undecided, policy.chosen_on, cap),
    }


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
