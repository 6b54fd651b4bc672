"""Building the datamodule, model and trainer of a run from its typed settings.

Objects are built here, at the top: the DataModule receives its typed data settings, the
LightningModule plain typed values (so that ``load_from_checkpoint(path)`` works on its own).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.callbacks import (
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)

from skinclf.data.datamodule import LesionDataModule
from skinclf.data.metadata import Encoding
from skinclf.data.records import reads_tables
from skinclf.errors import SkinclfError, examples
from skinclf.fitting.callbacks import AtomicCheckpointIO, FiniteLossGuard, RunRecordInCheckpoints
from skinclf.fitting.checkpoints import read_checkpoint
from skinclf.fitting.tracking import build_loggers
from skinclf.machine import runs_on_gpu
from skinclf.models import LesionClassifier
from skinclf.models.settings import ClassifierSettings, Head, stored_model
from skinclf.schema import TrainConfig

log = logging.getLogger(__name__)

#: How each value of checkpoint.select chooses, in words for metrics.json.
CHECKPOINT_RULES = {"best": "highest val/auprc", "last": "last epoch (validation plays no part)"}


def diagnoses(settings: TrainConfig) -> list[str] | None:
    """The classes of task=diagnosis (the malignant diagnoses, then the benign ones); None for task=binary."""
    if settings.task.name != "diagnosis":
        return None
    if not reads_tables(settings.data):
        raise SkinclfError(
            "task=diagnosis needs the diagnoses of a table (data=table with its diagnosis column, or a preset such "
            "as data=ham10000): an image folder knows only benign and malignant"
        )
    return [*settings.data.malignant, *settings.data.benign]


def build_datamodule(settings: TrainConfig) -> LesionDataModule:
    steps = instantiate(settings.aug.train) if settings.aug.train else None
    return LesionDataModule(
        settings.data, steps, settings.seed, diagnoses(settings), settings.cv, settings.model.metadata_columns
    )


def class_weights(settings: TrainConfig, datamodule: LesionDataModule) -> list[float] | None:
    """task.class_weights=balanced: each diagnosis weighed by (training images) / (diagnoses x its images)."""
    classes = diagnoses(settings)
    if classes is None or settings.task.class_weights is None:
        return None
    counts = datamodule.diagnosis_counts()
    absent = [c for c in classes if counts.get(c, 0) == 0]
    if absent:
        raise SkinclfError(
            f"no training image has the diagnosis {examples(absent)}: leave it out of data.benign/malignant"
        )
    return [float(counts.sum() / (len(classes) * counts[c])) for c in classes]


def build_model(
    settings: TrainConfig,
    load_pretrained_weights: bool,
    weights_of_classes: list[float] | None = None,
    metadata_encoding: Encoding | None = None,
) -> LesionClassifier:
    """The LightningModule; without load_pretrained_weights (a resumed run, the bench) no ImageNet weights are read."""
    classes = diagnoses(settings)
    head = Head(classes, list(settings.data.malignant) if classes else None, weights_of_classes)
    classifier = ClassifierSettings(
        model=settings.model,
        optim=settings.optim,
        loss=settings.loss,
        speed=settings.speed,
        preprocessing=settings.data.preprocessing(),
        head=head,
        metadata_encoding=metadata_encoding,
    )
    return LesionClassifier(classifier, load_pretrained_weights=load_pretrained_weights)


def run_info(settings: TrainConfig) -> dict[str, Any]:
    """Who a run is: what metrics.json and every checkpoint record of it."""
    return {
        "name": settings.name,
        "arch": settings.model.arch,
        **({"library": settings.model.library} if settings.model.library != "torchvision" else {}),
        "weights": settings.model.weights,
        "aug": settings.aug.name,
        "task": settings.task.name,
        "seed": settings.seed,
        **({"ema_decay": settings.ema.decay} if settings.ema.decay else {}),
        **({"cv": {"folds": settings.cv.folds, "fold": settings.cv.fold}} if settings.cv.folds else {}),
        "recipe": recipe(settings),
        "evaluation": dataclasses.asdict(settings.evaluation),
    }


def recipe(settings: TrainConfig) -> dict[str, Any]:
    """How the model was trained, in words a model card shows."""
    data, optim = settings.data, settings.optim
    optimizer = optim.optimizer.rsplit(".", 1)[-1]
    return {
        "optimizer": f"{optimizer}, learning rate {optim.lr:g}, warmup {optim.warmup_epochs:g} epoch(s), cosine decay",
        "epochs": settings.trainer.max_epochs,
        "batch": data.batch_size,
        "images": f"shorter side {data.resize_size} px, centre {data.crop_size} px",
        "colour constancy": data.color_constancy,
        "augmentation": settings.aug.name,
        "loss": "cross-entropy over the diagnoses" if settings.task.name == "diagnosis" else "BCE with logits",
    }


def build_trainer(settings: TrainConfig, run_dir: Path) -> tuple[pl.Trainer, dict[str, ModelCheckpoint]]:
    """The Trainer with its checkpoint callbacks: the latest, and with checkpoint.select=best the best by val/auprc."""
    every_n_epochs = settings.checkpoint.every_n_epochs
    # no monitor: every save replaces the previous one (ModelCheckpoint's save_last only refreshes
    # last.ckpt when a new best is saved)
    folder = run_dir / "checkpoints"
    checkpoints = {"last": ModelCheckpoint(dirpath=folder, filename="last", every_n_epochs=every_n_epochs)}
    if settings.checkpoint.select == "best":
        checkpoints["best"] = ModelCheckpoint(
            dirpath=folder,
            filename="best-epoch{epoch:03d}",
            auto_insert_metric_name=False,
            monitor="val/auprc",
            mode="max",
            save_top_k=1,
            every_n_epochs=every_n_epochs,
        )
    loggers = build_loggers(settings.logger, run_dir)
    callbacks = [
        *checkpoints.values(),
        RunRecordInCheckpoints(run_info(settings)),
        *([LearningRateMonitor(logging_interval="step")] if loggers else []),
        FiniteLossGuard(every_n_steps=settings.speed.nonfinite_check_steps),
        *training_aids(settings),
    ]
    arguments = dataclasses.asdict(settings.trainer)
    if arguments["enable_progress_bar"] is not False:
        # each refresh reads the loss back from the device: not every step
        callbacks.append(TQDMProgressBar(refresh_rate=settings.speed.progress_refresh_steps))
    warn_of_slow_precision(arguments["accelerator"], arguments["precision"])
    trainer = pl.Trainer(
        **arguments, default_root_dir=run_dir, logger=loggers, callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )
    return trainer, checkpoints


def training_aids(settings: TrainConfig) -> list[Callback]:
    """Lightning's EMA of the weights and early stopping on val/auprc, where the settings ask for them."""
    aids: list[Callback] = []
    if settings.ema.decay is not None:
        aids.append(EMAWeightAveraging(decay=settings.ema.decay))
    if settings.early_stopping.patience is not None:
        stopping = settings.early_stopping
        aids.append(
            EarlyStopping(monitor="val/auprc", mode="max", patience=stopping.patience, min_delta=stopping.min_delta)
        )
    return aids


def warn_of_slow_precision(accelerator: str, precision: str | None) -> None:
    """Mixed precision on a CPU runs many times slower than 32-bit: say so when it is asked for."""
    on_cpu = accelerator in ("cpu", "auto") and not runs_on_gpu(accelerator)
    if on_cpu and str(precision).endswith("-mixed"):
        log.warning(
            "trainer.precision=%s on the CPU: CPUs have no fast %s convolutions, so each step takes many times "
            "longer than with trainer.precision=32-true",
            precision,
            str(precision).split("-")[0],
        )


def chosen_checkpoint(checkpoints: dict[str, ModelCheckpoint], select: str) -> tuple[str, str]:
    """The checkpoint to evaluate, and the rule that chose it: checkpoint.select, or last when no validation ran."""
    if select == "best" and not checkpoints["best"].best_model_path:
        log.warning("no validation ran, so no best checkpoint: evaluating the last one")
        select = "last"
    return checkpoints[select].best_model_path, select


def resume_checkpoint(settings: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, if any.

    ``ckpt=last`` or ``resume=true``: the run folder's last.ckpt (resume=true starts afresh
    when there is none yet); ``ckpt=<file>``: that checkpoint. Either must be of the
    configured architecture.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if settings.ckpt == "last" or (settings.ckpt is None and settings.resume):
        if not last.is_file():
            if settings.ckpt == "last":
                raise SkinclfError(
                    f"ckpt=last, but {last} does not exist: pass hydra.run.dir=<folder of the run to continue>"
                )
            log.info("resume=true: %s does not exist yet, starting afresh", last)
            return None
        path = last
    elif settings.ckpt:
        path = Path(settings.ckpt).expanduser()
    else:
        return None
    model = stored_model(read_checkpoint(path)["hyper_parameters"])
    arch, library = model["arch"], model["library"]
    if (arch, library) != (settings.model.arch, settings.model.library):
        raise SkinclfError(
            f"{path} holds a {library} {arch} model but the config asks for model.library={settings.model.library} "
            f"model.arch={settings.model.arch}: resume with the model it was trained with, or start a new run"
        )
    log.info("resuming from %s", path)
    return path
