"""Typed schemas of the configs, registered in Hydra's ConfigStore.

Hydra checks keys and types against them when it composes a config, so a misspelt key or a
wrong type fails at once with a message that names it. Values are not repeated here: every
field is MISSING and the YAML files hold the values. :func:`validate` checks the ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from skinclf.errors import SkinclfError

# OmegaConf reads the annotations at run time: keep typing.Optional/Any, no "X | None".
# ruff: noqa: UP045


class RangeError(ValueError):
    """A value outside its allowed range; the message names the key."""


def _require(ok: bool, key: str, value: object, rule: str) -> None:
    if not ok:
        raise RangeError(f"{key}={value!r} is out of range: it must be {rule}")


@dataclass
class SyntheticConfig:
    n_train: int = MISSING
    n_test: int = MISSING
    image_size: int = MISSING
    malignant_fraction: float = MISSING
    seed: int = MISSING

    def __post_init__(self) -> None:
        _require(self.n_train >= 4 and self.n_test >= 2, "data.synthetic.n_train", self.n_train, "at least 4")
        _require(self.image_size >= 16, "data.synthetic.image_size", self.image_size, ">= 16")
        _require(
            0 < self.malignant_fraction < 1, "data.synthetic.malignant_fraction", self.malignant_fraction, "in (0, 1)"
        )


@dataclass
class DataConfig:
    root: Optional[str] = MISSING
    split_dir: Optional[str] = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    split_seed: int = MISSING
    groups_csv: Optional[str] = MISSING
    group_image_column: str = MISSING
    group_column: str = MISSING
    check_images: bool = MISSING
    skip_corrupt: bool = MISSING
    resize_size: int = MISSING
    crop_size: int = MISSING
    mean: Optional[list[float]] = MISSING
    std: Optional[list[float]] = MISSING
    cache: bool = MISSING
    cache_dir: Optional[str] = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    pin_memory: bool = MISSING
    persistent_workers: bool = MISSING
    synthetic: Optional[SyntheticConfig] = MISSING

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            _require(0 < getattr(self, key) < 1, f"data.{key}", getattr(self, key), "in (0, 1)")
        _require(self.crop_size > 0, "data.crop_size", self.crop_size, "> 0")
        _require(
            self.resize_size >= self.crop_size,
            "data.resize_size",
            self.resize_size,
            f">= data.crop_size ({self.crop_size})",
        )
        _require(self.batch_size > 0, "data.batch_size", self.batch_size, "> 0")
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")
        for key in ("mean", "std"):
            values = getattr(self, key)
            _require(values is None or len(values) == 3, f"data.{key}", values, "null or three numbers (R, G, B)")
        _require(self.std is None or min(self.std) > 0, "data.std", self.std, "positive")


@dataclass
class ModelConfig:
    arch: str = MISSING
    weights: Optional[str] = MISSING


@dataclass
class AugConfig:
    name: str = MISSING
    strength: float = MISSING
    train: Optional[list[Any]] = MISSING

    def __post_init__(self) -> None:
        _require(self.strength >= 0, "aug.strength", self.strength, ">= 0")


@dataclass
class OptimConfig:
    optimizer: str = MISSING
    lr: float = MISSING
    kwargs: dict[str, Any] = MISSING
    warmup_epochs: float = MISSING

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", self.lr, "> 0")
        _require(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, ">= 0")


PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "32", "16-true", "bf16-true", "64-true")


@dataclass
class TrainerConfig:
    """Keyword arguments of pytorch_lightning.Trainer; the ones not in the YAML default to Lightning's."""

    accelerator: str = MISSING
    devices: Any = MISSING
    precision: str = MISSING
    max_epochs: int = MISSING
    check_val_every_n_epoch: int = MISSING
    log_every_n_steps: int = MISSING
    deterministic: Any = MISSING
    enable_progress_bar: bool = MISSING
    use_distributed_sampler: bool = MISSING
    strategy: Any = "auto"
    num_nodes: int = 1
    sync_batchnorm: bool = False
    enable_model_summary: Optional[bool] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    num_sanity_val_steps: Optional[int] = None
    val_check_interval: Optional[float] = None
    gradient_clip_val: Optional[float] = None
    accumulate_grad_batches: int = 1
    gradient_clip_algorithm: Optional[str] = None
    benchmark: Optional[bool] = None
    profiler: Optional[str] = None
    fast_dev_run: Any = False
    min_epochs: Optional[int] = None
    max_time: Optional[str] = None
    limit_test_batches: Optional[float] = None
    limit_predict_batches: Optional[float] = None
    overfit_batches: float = 0.0
    detect_anomaly: bool = False
    reload_dataloaders_every_n_epochs: int = 0

    def __post_init__(self) -> None:
        _require(self.max_epochs > 0, "trainer.max_epochs", self.max_epochs, "> 0")
        _require(
            self.check_val_every_n_epoch > 0, "trainer.check_val_every_n_epoch", self.check_val_every_n_epoch, "> 0"
        )
        _require(
            self.precision in ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"),
            "trainer.precision",
            self.precision,
            "one of 32-true, 16-mixed, bf16-mixed (or 16-true, bf16-true, 64-true)",
        )


@dataclass
class LossConfig:
    pos_weight: Optional[float] = MISSING

    def __post_init__(self) -> None:
        _require(self.pos_weight is None or self.pos_weight > 0, "loss.pos_weight", self.pos_weight, "null or > 0")


@dataclass
class SpeedConfig:
    channels_last: Optional[bool] = MISSING
    compile: bool = MISSING
    progress_refresh_steps: int = MISSING
    nonfinite_check_steps: int = MISSING

    def __post_init__(self) -> None:
        _require(self.progress_refresh_steps > 0, "speed.progress_refresh_steps", self.progress_refresh_steps, "> 0")
        _require(self.nonfinite_check_steps > 0, "speed.nonfinite_check_steps", self.nonfinite_check_steps, "> 0")


@dataclass
class CheckpointConfig:
    select: str = MISSING
    every_n_epochs: int = MISSING

    def __post_init__(self) -> None:
        _require(self.select in ("best", "last"), "checkpoint.select", self.select, "best or last")
        _require(self.every_n_epochs > 0, "checkpoint.every_n_epochs", self.every_n_epochs, "> 0")


@dataclass
class BootstrapConfig:
    resamples: int = MISSING
    confidence: float = MISSING
    seed: int = MISSING

    def __post_init__(self) -> None:
        _require(self.resamples >= 0, "bootstrap.resamples", self.resamples, ">= 0 (0: no intervals)")
        _require(0 < self.confidence < 1, "bootstrap.confidence", self.confidence, "in (0, 1)")


def _check_recalls(key: str, recalls: list[float]) -> None:
    for recall in recalls:
        _require(0 < recall <= 1, key, recall, "in (0, 1] (each target recall)")


@dataclass
class EvaluationConfig:
    target_recalls: list[float] = MISSING
    bootstrap: BootstrapConfig = MISSING

    def __post_init__(self) -> None:
        _check_recalls("evaluation.target_recalls", self.target_recalls)


@dataclass
class TrainConfig:
    """python -m skinclf.train (and skinclf.split, which composes the same config)."""

    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    aug: AugConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    name: str = MISSING
    seed: int = MISSING
    resume: bool = MISSING
    ckpt_path: Optional[str] = MISSING
    loss: LossConfig = MISSING
    speed: SpeedConfig = MISSING
    checkpoint: CheckpointConfig = MISSING
    evaluation: EvaluationConfig = MISSING


@dataclass
class BenchSettings:
    rounds: int = MISSING
    batches: int = MISSING
    warmup_batches: int = MISSING
    pipeline_batches: int = MISSING
    worker_counts: Optional[list[int]] = MISSING

    def __post_init__(self) -> None:
        _require(self.rounds > 0, "bench.rounds", self.rounds, "> 0")
        _require(self.batches > 0, "bench.batches", self.batches, "> 0")


@dataclass
class BenchConfig(TrainConfig):
    """python -m skinclf.bench: the training config and the bench's own settings."""

    bench: BenchSettings = MISSING


@dataclass
class InferenceConfig:
    """What evaluate and predict share: the checkpoint and how to run it."""

    ckpt: str = MISSING
    root: Optional[str] = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    accelerator: str = MISSING
    precision: str = MISSING


@dataclass
class EvaluateConfig(InferenceConfig):
    split: str = MISSING
    data_root: Optional[str] = MISSING
    input: Optional[str] = MISSING
    target_recalls: list[float] = MISSING
    bootstrap: BootstrapConfig = MISSING

    def __post_init__(self) -> None:
        _check_recalls("target_recalls", self.target_recalls)


@dataclass
class PredictConfig(InferenceConfig):
    input: str = MISSING
    output: str = MISSING
    target_recall: float = MISSING
    threshold: Optional[float] = MISSING
    flip_tta: bool = MISSING

    def __post_init__(self) -> None:
        _check_recalls("target_recall", [self.target_recall])


@dataclass
class ExportConfig:
    ckpt: str = MISSING
    format: str = MISSING
    output: Optional[str] = MISSING
    target_recalls: list[float] = MISSING
    tolerance: float = MISSING

    def __post_init__(self) -> None:
        _check_recalls("target_recalls", self.target_recalls)
        _require(self.format in ("onnx", "torchscript"), "format", self.format, "onnx or torchscript")


SCHEMAS = {
    "train_schema": TrainConfig,
    "bench_schema": BenchConfig,
    "evaluate_schema": EvaluateConfig,
    "predict_schema": PredictConfig,
    "export_schema": ExportConfig,
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore, where the primary configs' defaults name them."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)


def validate(cfg: DictConfig) -> None:
    """Check the ranges of a composed config; a SkinclfError names the first bad key."""
    try:
        OmegaConf.to_object(cfg)
    except RangeError as error:
        raise SkinclfError(str(error)) from error
    except OmegaConfBaseException as error:
        raise SkinclfError(f"invalid config: {error}") from error
