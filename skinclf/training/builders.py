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
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from skinclf.config.schema import TrainConfig
from skinclf.core.errors import SkinclfError, examples
from skinclf.core.machine import runs_on_gpu
from skinclf.data.datamodule import LesionDataModule
from skinclf.data.metadata import Encoding
from skinclf.data.records import reads_tables
from skinclf.models import LesionClassifier
from skinclf.models.checkpoints import read_checkpoint
from skinclf.models.settings import ClassifierSettings, Head
from skinclf.runs import CHECKPOINTS, LAST_CHECKPOINT, training_identity
from skinclf.tracking import build_loggers
from skinclf.training.callbacks import AtomicCheckpointIO, CheckpointContents

log = logging.getLogger(__name__)

#: The checkpoint callbacks a run evaluates the checkpoint of, the first present (conf/callbacks), and their rule in
#: words for metrics.json.
EVALUATED_CHECKPOINTS = {
    "best_checkpoint": "highest val/auprc",
    "last_checkpoint": "last epoch (validation plays no part)",
}


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
    model = settings.model
    return LesionDataModule(
        settings.data,
        model.preprocessing,
        steps,
        settings.seed,
        diagnoses(settings),
        settings.cv,
        model.metadata_columns,
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
        head=head,
        metadata_encoding=metadata_encoding,
    )
    return LesionClassifier(classifier, load_pretrained_weights=load_pretrained_weights)


def build_callbacks(configs: dict[str, Any], run_folder: Path) -> dict[str, Callback]:
    """The callbacks group's callbacks by name, each instantiated from its _target_; a ModelCheckpoint writes into
    the run folder's checkpoints/."""
    callbacks = {}
    for name, config in configs.items():
        if not isinstance(config, dict) or "_target_" not in config:
            raise SkinclfError(
                f"callbacks.{name} is not a callback: select them with callbacks=[default,...] (conf/callbacks/*.yaml)"
            )
        try:
            checkpoint = issubclass(get_class(config["_target_"]), ModelCheckpoint)
            callbacks[name] = instantiate(config, **({"dirpath": run_folder / CHECKPOINTS} if checkpoint else {}))
        except (InstantiationException, ImportError, ValueError, TypeError) as error:
            raise SkinclfError(f"callbacks.{name} cannot be made: {error.__cause__ or error}") from error
    if not any(name in callbacks for name in EVALUATED_CHECKPOINTS):
        kept = " or ".join(EVALUATED_CHECKPOINTS)
        raise SkinclfError(
            f"the callbacks {examples(sorted(callbacks))} save no checkpoint to evaluate: keep {kept} among them "
            "(callbacks=[default,...])"
        )
    return callbacks


def build_trainer(
    settings: TrainConfig, run_folder: Path, identity: dict[str, Any] | None = None
) -> tuple[pl.Trainer, dict[str, Callback]]:
    """The Trainer with the callbacks group's callbacks (returned by name) and skinclf's own: what its checkpoints
    hold (the run's ``identity``, by default that of a run from random initialisation), the learning rate to the
    loggers, a progress bar that reads the loss back every few steps."""
    callbacks = build_callbacks(settings.callbacks, run_folder)
    loggers = build_loggers(settings.logger, run_folder)
    own = [
        CheckpointContents(identity or training_identity(settings, None)),
        *([LearningRateMonitor(logging_interval="step")] if loggers else []),
    ]
    arguments = dataclasses.asdict(settings.trainer)
    if arguments["enable_progress_bar"] is not False:
        # each refresh reads the loss back from the device: not every step
        own.append(TQDMProgressBar(refresh_rate=settings.speed.progress_refresh_steps))
    warn_of_slow_precision(arguments["accelerator"], arguments["precision"])
    trainer = pl.Trainer(
        **arguments,
        default_root_dir=run_folder,
        logger=loggers,
        callbacks=[*callbacks.values(), *own],
        plugins=[AtomicCheckpointIO()],
    )
    return trainer, callbacks


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


def chosen_checkpoint(callbacks: dict[str, Callback]) -> tuple[str, str]:
    """The checkpoint to evaluate and the callback that saved it: best_checkpoint's where it is among the callbacks
    and validation ran, else last_checkpoint's."""
    chosen = [name for name in EVALUATED_CHECKPOINTS if name in callbacks and callbacks[name].best_model_path]
    if "best_checkpoint" in callbacks and chosen != ["best_checkpoint", "last_checkpoint"][: len(chosen)]:
        log.warning("no validation ran, so no best checkpoint: evaluating the last one")
    if not chosen:
        raise SkinclfError("the run saved no checkpoint to evaluate (trainer.max_epochs, the checkpoint callbacks)")
    return callbacks[chosen[0]].best_model_path, chosen[0]


def resume_checkpoint(settings: TrainConfig, run_folder: Path) -> Path | None:
    """The checkpoint to continue from, if any.

    ``ckpt=last`` or ``resume=true``: the run folder's last.ckpt (resume=true starts afresh
    when there is none yet); ``ckpt=<file>``: that checkpoint. Either must be of the
    configured architecture.
    """
    last = run_folder / CHECKPOINTS / LAST_CHECKPOINT
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
    model = read_checkpoint(path)["hyper_parameters"]["settings"]["model"]
    arch, library = model["arch"], model["library"]
    if (arch, library) != (settings.model.arch, settings.model.library):
        raise SkinclfError(
            f"{path} holds a {library} {arch} model but the config asks for model.library={settings.model.library} "
            f"model.arch={settings.model.arch}: resume with the model it was trained with, or start a new run"
        )
    log.info("resuming from %s", path)
    return path
