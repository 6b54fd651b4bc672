"""A training run from start to end: fit (or continue fitting), choose a checkpoint, evaluate it on test."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

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
from skinclf.fitting.checkpoints import load_classifier, stored_validation
from skinclf.inference import inference_trainer, predict_loader
from skinclf.metrics.decisions import VALIDATION, check_decidable, choose_policy, threshold_rule
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
    trainer, callbacks = build_trainer(settings, run_folder)
    for logger in trainer.loggers:
        logger.log_hyperparams(config_params(settings))
    fitted = torch.compile(model) if settings.speed.compile else model
    trainer.fit(fitted, datamodule=datamodule, ckpt_path=resume_from)
    if not trainer.is_global_zero:
        return {}
    return evaluate_chosen_checkpoint(settings, run_folder, trainer, callbacks, datamodule)


def stopped_early(trainer: pl.Trainer) -> bool:
    """Whether early stopping ended the training before trainer.max_epochs."""
    stopping = trainer.early_stopping_callback
    return stopping is not None and stopping.stopped_epoch > 0


def evaluate_chosen_checkpoint(
    settings: TrainConfig,
    run_folder: Path,
    trainer: pl.Trainer,
    callbacks: dict[str, Callback],
    datamodule: LesionDataModule,
) -> dict:
    """The decision policy from the chosen checkpoint's validation predictions, figures on test: the run's files."""
    ckpt_path, chosen_by = chosen_checkpoint(callbacks)
    classifier, checkpoint = load_classifier(ckpt_path)
    predictor = inference_trainer(settings.trainer.accelerator, settings.trainer.precision)  # one device after DDP
    tta = settings.evaluation.tta
    # None: the chosen epoch was not validated (trainer.check_val_every_n_epoch), or with evaluation.tta, whose
    # views the validation during training did not take; stored, so that predict and evaluate reuse it
    validation = stored_validation(checkpoint, tta)
    if validation is None:
        validation = predict_loader(predictor, classifier, datamodule.val_dataloader(), tta=tta)
        CheckpointContents.add_validation(Path(ckpt_path), checkpoint, validation, tta)
    test = predict_loader(predictor, classifier, datamodule.test_dataloader(), tta=tta)
    head = classifier.settings.head
    policy = choose_policy(validation, VALIDATION, settings.evaluation, head.malignant_diagnoses)
    looked_at = validation if chosen_by == "best_checkpoint" else validation.iloc[:0]  # what the rule chose on
    record = RunRecord(
        run_info(settings),
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
    seen = ImagesAsSeen(datamodule.root, classifier.settings.model.preprocessing, explainer, settings.explain.enabled)
    training = datamodule.datasets["train"].table
    predictions = {"val": validation, "test": test}
    return write_results(run_folder, record, predictions, seen, trainer.loggers, trainer.global_step, training=training)
