"""A training run from start to end: fit (or continue fitting), choose a checkpoint, evaluate it on test."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

from skinclf.data.datamodule import LesionDataModule
from skinclf.explain import Explainer, evaluation_explainer
from skinclf.fitting.builders import (
    EVALUATED_CHECKPOINTS,
    build_datamodule,
    build_model,
    build_trainer,
    chosen_checkpoint,
    class_weights,
    resume_checkpoint,
    run_info,
)
from skinclf.fitting.callbacks import CheckpointContents
from skinclf.fitting.checkpoints import load_classifier, read_checkpoint, stored_run_info
from skinclf.inference import inference_trainer, predict_loader
from skinclf.machine import runs_on_gpu
from skinclf.metrics.decisions import VALIDATION, check_decidable, choose_policy, referral_of, threshold_rule
from skinclf.models import LesionClassifier
from skinclf.models.novelty import FeatureDistance, pooled_features
from skinclf.results import ImagesAsSeen, RunRecord, write_results
from skinclf.schema import TrainConfig
from skinclf.tracking import config_params


def train(settings: TrainConfig, run_folder: Path) -> dict:
    """Fit (or continue fitting), then evaluate the chosen checkpoint on val and test.

    Writes the run's files into run_folder and returns its metrics; under DDP only the process of
    rank 0 evaluates and writes, the others return an empty dict.
    """
    resume_from = resume_checkpoint(settings, run_folder)
    datamodule = build_datamodule(settings)
    datamodule.prepare_data()  # the validation split chooses the thresholds: said now if it cannot, not after training
    validation_labels = datamodule.run_tables()["val"]["label"].to_numpy()
    check_decidable(
        validation_labels, VALIDATION, threshold_rule(settings.evaluation), settings.evaluation.target_recalls
    )
    pl.seed_everything(settings.seed, workers=True)  # after the data is read: the job that made it starts alike
    model = build_model(
        settings, resume_from is None, class_weights(settings, datamodule), datamodule.metadata_encoding()
    )
    if settings.explain.enabled:  # a layer or target that is not there: said before training, not after
        Explainer([model], settings.explain)
    origin = (
        model.weights_origin
        if resume_from is None
        else stored_run_info(read_checkpoint(resume_from)).get("weights_origin")
    )
    identity = run_info(settings, origin)
    trainer, callbacks = build_trainer(settings, run_folder, identity)
    for logger in trainer.loggers:
        logger.log_hyperparams(config_params(settings))
    fitted = torch.compile(model) if settings.speed.compile else model
    trainer.fit(fitted, datamodule=datamodule, ckpt_path=resume_from)
    if not trainer.is_global_zero:
        return {}
    return evaluate_chosen_checkpoint(settings, identity, run_folder, trainer, callbacks, datamodule)


def fit_novelty(classifier: LesionClassifier, loader: DataLoader, device: torch.device) -> FeatureDistance:
    """The novelty detector of the classifier, fitted on the pooled features of the loader's (training) images."""
    features, labels = [], []
    classifier = classifier.to(device)
    with torch.inference_mode(), pooled_features(classifier.head) as pooled:
        for batch in loader:
            metadata = batch["metadata"].to(device) if "metadata" in batch else None
            classifier(batch["image"].to(device), metadata)
            features.append(pooled.features.cpu())
            labels.append(batch["label"])
    classifier.cpu()
    return FeatureDistance.fit(torch.cat(features), torch.cat(labels))


def stopped_early(trainer: pl.Trainer) -> bool:
    """Whether early stopping ended the training before trainer.max_epochs."""
    stopping = trainer.early_stopping_callback
    return stopping is not None and stopping.stopped_epoch > 0


def evaluate_chosen_checkpoint(
    settings: TrainConfig,
    identity: dict,
    run_folder: Path,
    trainer: pl.Trainer,
    callbacks: dict[str, Callback],
    datamodule: LesionDataModule,
) -> dict:
    """The decision policy from the chosen checkpoint's validation predictions, figures on test: the run's files."""
    ckpt_path, chosen_by = chosen_checkpoint(callbacks)
    classifier, checkpoint = load_classifier(ckpt_path)
    device = torch.device("cuda" if runs_on_gpu(settings.trainer.accelerator) else "cpu")
    classifier.novelty = fit_novelty(classifier, datamodule.train_as_evaluated_dataloader(), device)
    predictor = inference_trainer(settings.trainer.accelerator, settings.trainer.precision)  # one device after DDP
    tta = settings.evaluation.tta
    # predicted again with the views of evaluation.tta and the novelty score; stored, for predict and evaluate
    validation = predict_loader(predictor, classifier, datamodule.val_dataloader(), tta=tta)
    CheckpointContents.add_evaluated(Path(ckpt_path), checkpoint, validation, tta, classifier.novelty)
    test = predict_loader(predictor, classifier, datamodule.test_dataloader(), tta=tta)
    head = classifier.settings.head
    referral = referral_of(validation, settings.evaluation.referral_rate, VALIDATION)
    policy = choose_policy(validation, VALIDATION, settings.evaluation, head.malignant_diagnoses, referral)
    looked_at = validation if chosen_by == "best_checkpoint" else validation.iloc[:0]  # what the rule chose on
    record = RunRecord(
        identity,
        "test split",
        settings.evaluation,
        policy,
        checkpoint=str(Path(ckpt_path).relative_to(run_folder)),
        checkpoint_choice={
            "rule": EVALUATED_CHECKPOINTS[chosen_by],
            "epoch": checkpoint["epoch"],
            "of_epochs": trainer.current_epoch,
            **({"stopped_early": True} if stopped_early(trainer) else {}),
            "validation_images": len(looked_at),
            "validation_malignant": int(looked_at["label"].sum()),
        },
    )
    explainer = evaluation_explainer([classifier], settings.explain, tta)
    explain = settings.explain
    masks = explain.mask_column if explain.enabled else None
    seen = ImagesAsSeen(datamodule.root, classifier.settings.model.preprocessing, explainer, explain.enabled, masks)
    training = datamodule.datasets["train"].table
    predictions = {"val": validation, "test": test}
    return write_results(run_folder, record, predictions, seen, trainer.loggers, trainer.global_step, training=training)
