"""Building the datamodule, model and trainer of a run from its composed config.

Objects are built here, at the top; the LightningModule and DataModule receive plain values.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger

from skinclf.callbacks import AtomicCheckpointIO, FiniteLossGuard
from skinclf.checkpoints import read_checkpoint
from skinclf.data.datamodule import LesionDataModule
from skinclf.data.splits import SplitSettings
from skinclf.data.synthetic import SyntheticSpec
from skinclf.errors import SkinclfError
from skinclf.models import LesionClassifier
from skinclf.models.backbones import preprocessing_preset

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> LesionDataModule:
    data = cfg.data
    return LesionDataModule(
        root=data.root,
        split_dir=data.split_dir,
        split=split_settings(data),
        resize_size=data.resize_size,
        crop_size=data.crop_size,
        train_steps=instantiate(cfg.aug.train) if cfg.aug.train else None,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        pin_memory=data.pin_memory,
        persistent_workers=data.persistent_workers,
        check_images=data.check_images,
        skip_corrupt=data.skip_corrupt,
        synthetic=SyntheticSpec(**data.synthetic) if data.synthetic else None,
        seed=cfg.seed,
        cache=data.cache,
        cache_dir=data.cache_dir,
    )


def split_settings(data: DictConfig) -> SplitSettings:
    return SplitSettings(
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        seed=data.split_seed,
        groups_csv=data.groups_csv,
        group_image_column=data.group_image_column,
        group_column=data.group_column,
    )


def build_model(cfg: DictConfig, load_pretrained_weights: bool = True) -> LesionClassifier:
    """The LightningModule; without load_pretrained_weights (a resumed run) no ImageNet weights are fetched."""
    preset = preprocessing_preset(cfg.model.arch, cfg.model.weights)
    return LesionClassifier(
        arch=cfg.model.arch,
        weights=cfg.model.weights,
        mean=list(cfg.data.mean or preset["mean"]),
        std=list(cfg.data.std or preset["std"]),
        resize_size=cfg.data.resize_size,
        crop_size=cfg.data.crop_size,
        optimizer=cfg.optim.optimizer,
        lr=cfg.optim.lr,
        optimizer_kwargs=OmegaConf.to_container(cfg.optim.kwargs),
        warmup_epochs=cfg.optim.warmup_epochs,
        pos_weight=cfg.loss.pos_weight,
        channels_last=cfg.speed.channels_last,
        load_pretrained_weights=load_pretrained_weights,
    )


def build_trainer(cfg: DictConfig, run_dir: Path) -> tuple[pl.Trainer, dict[str, ModelCheckpoint]]:
    """The Trainer with two checkpoint callbacks: the best by val/auprc, and the latest."""
    every_n_epochs = cfg.checkpoint.every_n_epochs
    checkpoints = {
        "best": ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best-epoch{epoch:03d}",
            auto_insert_metric_name=False,
            monitor="val/auprc",
            mode="max",
            save_top_k=1,
            every_n_epochs=every_n_epochs,
        ),
        # no monitor: every save replaces the previous one (ModelCheckpoint's save_last only
        # refreshes last.ckpt when a new best is saved)
        "last": ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", every_n_epochs=every_n_epochs),
    }
    logger = TensorBoardLogger(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False)
    callbacks = [
        *checkpoints.values(),
        LearningRateMonitor(logging_interval="step"),
        FiniteLossGuard(every_n_steps=cfg.speed.nonfinite_check_steps),
    ]
    if cfg.trainer.get("enable_progress_bar", True):
        # each refresh reads the loss back from the device: not every step
        callbacks.append(TQDMProgressBar(refresh_rate=cfg.speed.progress_refresh_steps))
    trainer = pl.Trainer(
        **cfg.trainer, default_root_dir=run_dir, logger=logger, callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )
    return trainer, checkpoints


def chosen_checkpoint(checkpoints: dict[str, ModelCheckpoint], select: str) -> str:
    """The checkpoint to evaluate: the best by val/auprc, or the last one."""
    if select == "best" and not checkpoints["best"].best_model_path:
        log.warning("no validation ran, so no best checkpoint: evaluating the last one")
        select = "last"
    return checkpoints[select].best_model_path


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, if any.

    ``ckpt_path=last`` or ``resume=true``: the run folder's last.ckpt (resume=true starts afresh
    when there is none yet); ``ckpt_path=<file>``: that checkpoint. Either must be of the
    configured architecture.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path == "last" or (cfg.ckpt_path is None and cfg.resume):
        if not last.is_file():
            if cfg.ckpt_path == "last":
                raise SkinclfError(
                    f"ckpt_path=last, but {last} does not exist: pass hydra.run.dir=<folder of the run to continue>"
                )
            log.info("resume=true: %s does not exist yet, starting afresh", last)
            return None
        path = last
    elif cfg.ckpt_path:
        path = Path(cfg.ckpt_path).expanduser()
    else:
        return None
    arch = read_checkpoint(path)["hyper_parameters"].get("arch")
    if arch != cfg.model.arch:
        raise SkinclfError(
            f"{path} holds a {arch} model but the config asks for model.arch={cfg.model.arch}: "
            "resume with the model it was trained with, or start a new run"
        )
    log.info("resuming from %s", path)
    return path
