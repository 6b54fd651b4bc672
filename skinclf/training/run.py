"""A training run from start to end: fit (or continue fitting), choose a checkpoint, evaluate it on test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from skinclf.config.schema import TrainConfig
from skinclf.core.machine import runs_on_gpu
from skinclf.data.datamodule import LesionDataModule
from skinclf.data.image_sets import Images
from skinclf.evaluation import Evaluation
from skinclf.models import LesionClassifier
from skinclf.models.checkpoints import load_classifier, read_checkpoint, stored_run_info
from skinclf.models.novelty import Familiarity
from skinclf.runs import LEFT_OUT, training_identity
from skinclf.tracking import config_params
from skinclf.trained import CheckpointModel
from skinclf.trained.explain import Explainer
from skinclf.trained.inference import Inference, inference_trainer, predict_loader
from skinclf.training.builders import (
    EVALUATED_CHECKPOINTS,
    build_datamodule,
    build_model,
    build_trainer,
    chosen_checkpoint,
    class_weights,
    resume_checkpoint,
)
from skinclf.training.callbacks import CheckpointContents


def train(settings: TrainConfig, run_folder: Path) -> dict:
    """Fit (or continue fitting), then evaluate the chosen checkpoint on val and test.

    Writes the run's files into run_folder and returns its metrics; under DDP only the process of
    rank 0 evaluates and writes, the others return an empty dict, as does a run of trainer.fast_dev_run (which
    saves no checkpoint to evaluate).
    """
    resume_from = resume_checkpoint(settings, run_folder)
    datamodule = build_datamodule(settings)
    datamodule.prepare_data()
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
    identity = training_identity(settings, origin)
    trainer, callbacks = build_trainer(settings, run_folder, identity)
    for logger in trainer.loggers:
        logger.log_hyperparams(config_params(settings))
    fitted = torch.compile(model) if settings.speed.compile else model
    trainer.fit(fitted, datamodule=datamodule, ckpt_path=resume_from)
    if not trainer.is_global_zero or trainer.fast_dev_run:
        return {}
    return evaluate_chosen_checkpoint(settings, run_folder, trainer, callbacks, datamodule)


def fit_novelty(classifier: LesionClassifier, datamodule: LesionDataModule, device: torch.device) -> Familiarity | None:
    """The classifier's novelty detector: the early statistics of its training images (as evaluated, without
    augmentation) and of its validation images; None for a backbone without early statistics."""
    if classifier.early_stage is None:
        return None
    classifier = classifier.to(device)
    statistics = {}
    for split, loader in (("train", datamodule.train_as_evaluated_dataloader()), ("val", datamodule.val_dataloader())):
        with torch.inference_mode(), classifier.early_statistics() as early:
            for batch in loader:
                metadata = batch["metadata"].to(device) if "metadata" in batch else None
                classifier(batch["image"].to(device), metadata)
        statistics[split] = torch.cat(early.batches).cpu()
    classifier.cpu()
    return Familiarity.fit(statistics["train"], statistics["val"])


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
    """The chosen checkpoint, its validation predictions and novelty detector stored in it, evaluated on test (and
    with cv.leave_out=source, on the source it left out, into left_out/): the run's files."""
    ckpt_path, chosen_by = chosen_checkpoint(callbacks)
    classifier, checkpoint = load_classifier(ckpt_path)
    device = torch.device("cuda" if runs_on_gpu(settings.trainer.accelerator) else "cpu")
    classifier.novelty = fit_novelty(classifier, datamodule, device)
    predictor = inference_trainer(settings.trainer.accelerator, settings.trainer.precision)  # one device after DDP
    tta = settings.evaluation.tta
    # predicted again with the views of evaluation.tta and the novelty score; stored, for predict and evaluate
    validation = predict_loader(predictor, classifier, datamodule.val_dataloader(), tta=tta)
    CheckpointContents.add_evaluated(Path(ckpt_path), checkpoint, validation, tta, classifier.novelty)
    test = predict_loader(predictor, classifier, datamodule.test_dataloader(), tta=tta)
    model = CheckpointModel(Path(ckpt_path), (classifier, checkpoint))
    inference = Inference(predictor, settings.data.batch_size, settings.data.num_workers)
    evaluation = Evaluation(model, settings.evaluation, settings.explain, inference, trainer.loggers)
    looked_at = validation if chosen_by == "best_checkpoint" else validation.iloc[:0]  # what the rule chose on
    choice = {
        "rule": EVALUATED_CHECKPOINTS[chosen_by],
        "epoch": checkpoint["epoch"],
        "of_epochs": trainer.current_epoch,
        **({"stopped_early": True} if stopped_early(trainer) else {}),
        "validation_images": len(looked_at),
        "validation_malignant": int(looked_at["label"].sum()),
    }
    tested = Images(datamodule.root, datamodule.datasets["test"].table, "test split")
    checkpoint_name = str(Path(ckpt_path).relative_to(run_folder))
    metrics = evaluation.run(
        tested, run_folder, test=test, checkpoint=checkpoint_name, checkpoint_choice=choice, step=trainer.global_step
    )
    if settings.cv.leave_out:
        left_out = model.split(LEFT_OUT)
        source = str(left_out.table["source"].iloc[0])
        images = Images(left_out.root, left_out.table, f"{source} (the source left out)")
        without_trackers = dataclasses.replace(evaluation, loggers=[])
        without_trackers.run(images, run_folder / LEFT_OUT, external=True, left_out=source)
    return metrics
