"""The typed settings of every command: each setting is declared here once, with its type and its range.

The YAML files of ``conf/`` hold the values, each with its comment; these dataclasses hold the
types and the range checks (in ``__post_init__``) and are what the components receive. Hydra checks
keys and types against them when it composes a config (they are in its ConfigStore), and
:func:`validate` turns the composed config into them, which runs the range checks and names the
first bad key. No field has a default (but the trainer group, whose defaults are Lightning's own): a
value missing from the YAML is an error.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from dataclasses import dataclass, fields
from typing import Any, Optional

import pytorch_lightning as pl
from hydra.core.config_store import ConfigStore
from lightning_fabric.connector import _convert_precision_to_unified_args
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from skinclf.core.errors import SkinclfError

# OmegaConf reads the annotations at run time: keep typing.Optional/Any, no "X | None".
# ruff: noqa: UP045


class RangeError(ValueError):
    """A value outside its allowed range; the message names the key."""


def require(ok: bool, key: str, value: object, rule: str) -> None:
    """Refuse a value out of range, naming the key and the rule."""
    if not ok:
        raise RangeError(f"{key}={value!r} is out of range: it must be {rule}")


def _check_recalls(key: str, recalls: list[float]) -> None:
    for recall in recalls:
        require(0 < recall <= 1, key, recall, "in (0, 1] (each target recall)")


# -- data -----------------------------------------------------------------------------------------


@dataclass
class SyntheticSpec:
    """What data=synthetic (and synthetic_table) generates; its cache folder is reused only for the same spec."""

    layout: str
    n_train: int
    n_test: int
    image_size: int
    malignant_fraction: float
    seed: int

    def __post_init__(self) -> None:
        require(self.layout in ("folders", "table"), "data.synthetic.layout", self.layout, "folders or table")
        require(self.n_train >= 4 and self.n_test >= 2, "data.synthetic.n_train", self.n_train, "at least 4")
        require(self.image_size >= 16, "data.synthetic.image_size", self.image_size, ">= 16")
        require(
            0 < self.malignant_fraction < 1, "data.synthetic.malignant_fraction", self.malignant_fraction, "in (0, 1)"
        )


@dataclass
class SplitSettings:
    """What the splits are made from and how: saved in split.json; reusing CSVs made otherwise is refused."""

    val_fraction: float
    val_min_malignant: int
    test_fraction: float
    split_seed: int
    groups_csv: Optional[str]
    group_image_column: str
    group_column: Optional[str]
    missing_groups: str
    near_duplicates: str
    table: Optional[str]
    images: Any
    sources: list[dict[str, Any]]
    image_column: str
    label_column: Optional[str]
    diagnosis_columns: Optional[list[str]]
    malignant: list[str]
    benign: list[str]
    metadata_table: Optional[str]
    metadata_table_image_column: Optional[str]
    split_column: Optional[str]
    skip_unlabelled: bool

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            require(0 < getattr(self, key) < 1, f"data.{key}", getattr(self, key), "in (0, 1)")
        require(self.val_min_malignant >= 0, "data.val_min_malignant", self.val_min_malignant, ">= 0")
        require(self.missing_groups in ("error", "own"), "data.missing_groups", self.missing_groups, "error or own")
        require(
            self.near_duplicates in ("group", "report", "off"),
            "data.near_duplicates",
            self.near_duplicates,
            "group, report or off",
        )
        images_ok = self.images is None or isinstance(self.images, str) or all(isinstance(i, str) for i in self.images)
        require(images_ok, "data.images", self.images, "a folder or a list of folders")
        require(bool(self.malignant), "data.malignant", self.malignant, "a list of at least one value")


@dataclass
class DataSettings(SplitSettings):
    """The data group: where the images are, how they are split, sized, cached and loaded."""

    root: Optional[str]
    split_dir: Optional[str]
    check_images: bool
    skip_corrupt: bool
    cache: bool
    cache_dir: Optional[str]
    prepare_workers: Optional[int]
    batch_size: int
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    sampler: str
    source_balance: bool
    synthetic: Optional[SyntheticSpec]

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.batch_size > 0, "data.batch_size", self.batch_size, "> 0")
        require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")
        workers = self.prepare_workers
        require(workers is None or workers >= 0, "data.prepare_workers", workers, ">= 0, or null for every core")
        require(self.sampler in ("random", "balanced"), "data.sampler", self.sampler, "random or balanced")

    def split_settings(self) -> SplitSettings:
        """The settings that decide the splits."""
        return SplitSettings(**{f.name: getattr(self, f.name) for f in fields(SplitSettings)})


#: model.preprocessing.color_constancy's values (see skinclf.data.color).
COLOR_CONSTANCY = ("none", "shades_of_gray")
#: model.preprocessing.crop_mode's values, timm's (see skinclf.data.preprocessing).
CROP_MODES = ("center", "squash", "border")
#: model.preprocessing.interpolation's values (see skinclf.data.preprocessing).
INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest")


@dataclass
class Preprocessing:
    """model.preprocessing: how the model sees an image, kept in every checkpoint (skinclf.data.preprocessing makes
    its decoder and transforms): decoded (a JPEG by DCT scaling to no less than resize_size, with jpeg_dct_scaling),
    colour constancy, brought to resize_size as crop_mode says (the shorter side, as most weights), the centre
    crop_size square, then (inside the model) (pixels / 255 - mean) / std."""

    resize_size: int
    crop_size: int
    interpolation: str
    mean: list[float]
    std: list[float]
    color_constancy: str
    jpeg_dct_scaling: bool
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        key = "model.preprocessing."
        require(self.crop_size > 0, key + "crop_size", self.crop_size, "> 0")
        rule = f">= {key}crop_size ({self.crop_size})"
        require(self.resize_size >= self.crop_size, key + "resize_size", self.resize_size, rule)
        for name in ("mean", "std"):
            values = getattr(self, name)
            require(len(values) == 3, key + name, values, "three numbers (R, G, B)")
        require(min(self.std) > 0, key + "std", self.std, "positive")
        rule = " or ".join(COLOR_CONSTANCY)
        require(self.color_constancy in COLOR_CONSTANCY, key + "color_constancy", self.color_constancy, rule)
        rule = " or ".join(INTERPOLATIONS)
        require(self.interpolation in INTERPOLATIONS, key + "interpolation", self.interpolation, rule)
        require(self.crop_mode in CROP_MODES, key + "crop_mode", self.crop_mode, " or ".join(CROP_MODES))


# -- model and training ---------------------------------------------------------------------------


@dataclass
class ModelSettings:
    """The model group: the backbone and its starting weights, how it sees an image, and the metadata read beside it."""

    library: str
    arch: str
    weights: Optional[str]
    preprocessing: Preprocessing
    head_dropout: float
    metadata_columns: list[str]
    metadata_dropout: float

    def __post_init__(self) -> None:
        require(self.library in ("torchvision", "timm"), "model.library", self.library, "torchvision or timm")
        require(0 <= self.head_dropout < 1, "model.head_dropout", self.head_dropout, "in [0, 1)")
        require(0 <= self.metadata_dropout < 1, "model.metadata_dropout", self.metadata_dropout, "in [0, 1)")


@dataclass
class TaskSettings:
    name: str
    class_weights: Optional[str]

    def __post_init__(self) -> None:
        require(self.name in ("binary", "diagnosis"), "task.name", self.name, "binary or diagnosis")
        require(self.class_weights in (None, "balanced"), "task.class_weights", self.class_weights, "null or balanced")


@dataclass
class AugSettings:
    name: str
    strength: float
    train: Optional[list[Any]]

    def __post_init__(self) -> None:
        require(self.strength >= 0, "aug.strength", self.strength, ">= 0")


@dataclass
class OptimSettings:
    optimizer: str
    lr: float
    kwargs: dict[str, Any]
    warmup_epochs: float

    def __post_init__(self) -> None:
        require(self.lr > 0, "optim.lr", self.lr, "> 0")
        require(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, ">= 0")


@dataclass
class LossSettings:
    pos_weight: Optional[float]

    def __post_init__(self) -> None:
        require(self.pos_weight is None or self.pos_weight > 0, "loss.pos_weight", self.pos_weight, "null or > 0")


@dataclass
class SpeedSettings:
    channels_last: Optional[bool]
    compile: bool
    progress_refresh_steps: int

    def __post_init__(self) -> None:
        require(self.progress_refresh_steps > 0, "speed.progress_refresh_steps", self.progress_refresh_steps, "> 0")


@dataclass
class CrossValidationSettings:
    """cv.folds=K splits train+val into K grouped, stratified folds; the run trains with fold cv.fold as validation.
    cv.leave_out=source leaves out source number cv.fold of data.sources instead."""

    folds: int
    fold: int
    leave_out: Optional[str]

    def __post_init__(self) -> None:
        require(self.folds == 0 or self.folds >= 2, "cv.folds", self.folds, "0 (no cross-validation) or >= 2")
        require(self.leave_out in (None, "source"), "cv.leave_out", self.leave_out, "null or source")
        require(
            not (self.folds and self.leave_out), "cv.leave_out", self.leave_out, "null with cv.folds (one or other)"
        )
        require(self.fold >= 0, "cv.fold", self.fold, ">= 0")
        if self.folds:
            rule = f"in 0..{self.folds - 1} (cv.folds={self.folds})"
            require(0 <= self.fold < self.folds, "cv.fold", self.fold, rule)


#: Trainer arguments that skinclf sets itself, from other settings.
TRAINER_ARGUMENTS_SET_BY_SKINCLF = ("default_root_dir", "logger", "callbacks", "plugins")


def _check_trainer_ranges(self: Any) -> None:
    for name in ("max_epochs", "check_val_every_n_epoch"):
        value = getattr(self, name)
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0, f"trainer.{name}", value, "> 0")
    try:
        _convert_precision_to_unified_args(self.precision)  # Lightning's own list of precisions
    except ValueError as error:
        raise RangeError(f"trainer.precision={self.precision!r} is out of range: {error}") from error


#: The trainer group: every keyword argument of pytorch_lightning.Trainer with Lightning's own
#: default, taken from its signature rather than written out again here (types are Lightning's to check).
TrainerSettings = dataclasses.make_dataclass(
    "TrainerSettings",
    [
        (name, Any, dataclasses.field(default=parameter.default))
        for name, parameter in inspect.signature(pl.Trainer.__init__).parameters.items()
        if name not in ("self", *TRAINER_ARGUMENTS_SET_BY_SKINCLF)
    ],
    namespace={"__post_init__": _check_trainer_ranges},
)


# -- evaluation -----------------------------------------------------------------------------------


#: The test-time augmentations (see skinclf.trained.inference.VIEWS).
TTA_CHOICES = ("none", "flips", "flips_rot")
#: evaluation.threshold_rule's values (see skinclf.metrics.decisions).
THRESHOLD_RULES = ("highest_precision", "guaranteed")
#: evaluation.calibration's values (see skinclf.metrics.calibration).
CALIBRATIONS = ("none", "temperature")


@dataclass
class BootstrapSettings:
    """Percentile intervals from ``resamples`` stratified resamples drawn with ``seed``."""

    resamples: int
    confidence: float
    seed: int

    def __post_init__(self) -> None:
        require(self.resamples >= 0, "evaluation.bootstrap.resamples", self.resamples, ">= 0 (0: no intervals)")
        require(0 < self.confidence < 1, "evaluation.bootstrap.confidence", self.confidence, "in (0, 1)")


@dataclass
class EvaluationSettings:
    """The evaluation group: how train, evaluate, predict, export and ensemble evaluate a model. A trained model
    records the settings it was evaluated with, and later commands use them unless the command line says otherwise."""

    target_recalls: list[float]
    threshold_rule: str
    threshold_confidence: float
    referral_rate: float
    tta: str
    bootstrap: BootstrapSettings
    subgroups: list[str]
    age_edges: list[float]
    calibration: str
    threshold_source: Optional[str]
    adapt: str
    exclude_training_duplicates: bool

    def __post_init__(self) -> None:
        _check_recalls("evaluation.target_recalls", self.target_recalls)
        rule = " or ".join(THRESHOLD_RULES)
        require(self.threshold_rule in THRESHOLD_RULES, "evaluation.threshold_rule", self.threshold_rule, rule)
        confidence = self.threshold_confidence
        require(0 < confidence < 1, "evaluation.threshold_confidence", confidence, "in (0, 1), e.g. 0.95")
        rate = self.referral_rate
        require(0 <= rate < 1, "evaluation.referral_rate", rate, "in [0, 1): the share of validation images referred")
        require(self.tta in TTA_CHOICES, "evaluation.tta", self.tta, " or ".join(TTA_CHOICES))
        require(self.calibration in CALIBRATIONS, "evaluation.calibration", self.calibration, " or ".join(CALIBRATIONS))
        require(self.adapt in ("none", "batchnorm"), "evaluation.adapt", self.adapt, "none or batchnorm")
        ascending = bool(self.age_edges) and all(a < b for a, b in itertools.pairwise(self.age_edges))
        require(ascending, "evaluation.age_edges", self.age_edges, "one or more numbers in ascending order")


#: explain.method's values (see skinclf.trained.explain).
EXPLAIN_METHODS = ("gradcam", "gradcam++")


@dataclass
class ExplainSettings:
    """The explain group: how maps of where a model looks are made (the error gallery always shows them)."""

    enabled: bool
    method: str
    layer: Optional[str]
    target: Optional[str]
    mask_column: Optional[str]

    def __post_init__(self) -> None:
        rule = " or ".join(EXPLAIN_METHODS)
        require(self.method in EXPLAIN_METHODS, "explain.method", self.method, rule)


# -- commands -------------------------------------------------------------------------------------


@dataclass
class PathSettings:
    """The paths group: the folders below which runs (outputs) and multiruns write (see conf/paths)."""

    outputs: str
    multiruns: str


@dataclass
class CommandConfig:
    """What every command has: the name of its run folder, below the paths group's."""

    name: str
    paths: PathSettings


@dataclass
class TrainConfig(CommandConfig):
    """python -m skinclf.train (and skinclf.split, which composes the same config)."""

    data: DataSettings
    model: ModelSettings
    task: TaskSettings
    aug: AugSettings
    optim: OptimSettings
    trainer: TrainerSettings
    evaluation: EvaluationSettings
    seed: int
    objective: str
    resume: bool
    ckpt: Optional[str]
    loss: LossSettings
    speed: SpeedSettings
    callbacks: dict[str, Any]
    cv: CrossValidationSettings
    explain: ExplainSettings
    logger: dict[str, Any]

    def __post_init__(self) -> None:
        require(self.objective.startswith("val/"), "objective", self.objective, "a validation figure, e.g. val/auprc")
        _check_no_threshold_source(self.evaluation, "a run chooses its thresholds on its own validation split")
        adapt = self.evaluation.adapt
        require(
            adapt == "none", "evaluation.adapt", adapt, "none here (a run is evaluated as trained): it is for evaluate"
        )


@dataclass
class PrepareBenchSettings:
    """bench.prepare: the photographs bench.mode=prepare generates and times the preparation of."""

    images: int
    width: int
    height: int
    quality: int
    folder: Optional[str]
    whole_decode: bool

    def __post_init__(self) -> None:
        require(self.images >= 10, "bench.prepare.images", self.images, ">= 10")
        require(min(self.width, self.height) > 0, "bench.prepare.width", self.width, "and height > 0")
        require(1 <= self.quality <= 100, "bench.prepare.quality", self.quality, "in 1-100")


@dataclass
class ServeBenchSettings:
    """bench.serve: the model bench.mode=serve serves, and the requests it sends."""

    ckpt: Optional[str]
    requests: int
    clients: list[int]
    max_batch_size: int
    max_seconds: float

    def __post_init__(self) -> None:
        require(self.requests > 0, "bench.serve.requests", self.requests, "> 0")
        require(self.clients and min(self.clients) > 0, "bench.serve.clients", self.clients, "counts > 0")


@dataclass
class BenchSettings:
    mode: str
    rounds: int
    batches: int
    warmup_batches: int
    pipeline_batches: int
    worker_counts: Optional[list[int]]
    prepare: PrepareBenchSettings
    serve: ServeBenchSettings

    def __post_init__(self) -> None:
        require(self.mode in ("train", "prepare", "serve"), "bench.mode", self.mode, "train, prepare or serve")
        require(self.rounds > 0, "bench.rounds", self.rounds, "> 0")
        require(self.batches > 0, "bench.batches", self.batches, "> 0")


@dataclass
class BenchConfig(TrainConfig):
    """python -m skinclf.bench: the training config and the bench's own settings."""

    bench: BenchSettings


def _check_no_threshold_source(evaluation: EvaluationSettings, why: str) -> None:
    rule = f"null here ({why}): it is for evaluate, predict and export"
    require(evaluation.threshold_source is None, "evaluation.threshold_source", evaluation.threshold_source, rule)


@dataclass
class TrainedModelConfig(CommandConfig):
    """What every command on a trained model has: the model (a checkpoint or an ensemble folder), and the evaluation
    settings whose keys the command line gives replace those the model recorded."""

    ckpt: str
    evaluation: EvaluationSettings


@dataclass
class ImagesConfig(TrainedModelConfig):
    """A command that runs a trained model on images (input, or a table of the data group) on a device."""

    input: Optional[str]
    data: DataSettings
    trainer: TrainerSettings
    explain: ExplainSettings


@dataclass
class EvaluateConfig(ImagesConfig):
    """python -m skinclf.evaluate: a trained model (ckpt) on labelled images (input), as training evaluates."""

    logger: dict[str, Any]


@dataclass
class PredictConfig(ImagesConfig):
    """python -m skinclf.predict: a trained model's decisions for images, labelled or not."""

    threshold: Optional[float]


@dataclass
class ExportConfig(TrainedModelConfig):
    """python -m skinclf.export: a trained model as one ONNX or TorchScript file with its decision policy."""

    format: str
    tolerance: float

    def __post_init__(self) -> None:
        require(self.format in ("onnx", "torchscript"), "format", self.format, "onnx or torchscript")


@dataclass
class ServeSettings:
    """The serve group: where the server listens, how it batches, and how large a request it takes."""

    host: str
    port: int
    accelerator: str
    workers: int
    max_batch_size: int
    batch_timeout: float
    timeout: float
    max_request_bytes: int
    max_images_per_request: int
    max_image_pixels: int
    recent_images: int

    def __post_init__(self) -> None:
        hosts = ("127.0.0.1", "0.0.0.0", "::")
        require(
            self.host in hosts, "serve.host", self.host, "127.0.0.1 (this machine), 0.0.0.0 or :: (every interface)"
        )
        require(1024 <= self.port <= 65535, "serve.port", self.port, "a TCP port from 1024 to 65535")
        require(self.accelerator in ("cpu", "cuda", "auto"), "serve.accelerator", self.accelerator, "cpu, cuda or auto")
        for key in ("workers", "max_batch_size", "max_request_bytes", "max_images_per_request", "max_image_pixels"):
            require(getattr(self, key) > 0, f"serve.{key}", getattr(self, key), "> 0")
        require(self.batch_timeout >= 0, "serve.batch_timeout", self.batch_timeout, ">= 0 seconds")
        require(self.recent_images >= 0, "serve.recent_images", self.recent_images, ">= 0 (0: no set alarm)")


@dataclass
class ServeConfig(TrainedModelConfig):
    """python -m skinclf.serve: a trained model behind an HTTP API and a page."""

    explain: ExplainSettings
    serve: ServeSettings


#: How an ensemble combines its members' scores (see skinclf.metrics.combining).
COMBINE_RULES = ("mean", "rank")


@dataclass
class EnsembleConfig(CommandConfig):
    """python -m skinclf.ensemble: the runs below the folders as one model."""

    runs: list[str]
    combine: str
    evaluation: EvaluationSettings
    explain: ExplainSettings
    logger: dict[str, Any]

    def __post_init__(self) -> None:
        require(bool(self.runs), "runs", self.runs, "a list of run or multirun folders")
        require(self.combine in COMBINE_RULES, "combine", self.combine, " or ".join(COMBINE_RULES))
        _check_no_threshold_source(self.evaluation, "an ensemble chooses them on its members' validation")


@dataclass
class ReportConfig(CommandConfig):
    """python -m skinclf.report: the runs below the folders compared."""

    runs: list[str]

    def __post_init__(self) -> None:
        require(bool(self.runs), "runs", self.runs, "a list of run or multirun folders")


SCHEMAS = {
    "train_schema": TrainConfig,
    "bench_schema": BenchConfig,
    "evaluate_schema": EvaluateConfig,
    "predict_schema": PredictConfig,
    "export_schema": ExportConfig,
    "serve_schema": ServeConfig,
    "ensemble_schema": EnsembleConfig,
    "report_schema": ReportConfig,
}

#: Command-line shorthands: explain=true is explain.enabled=true.
SHORTHANDS = {"explain": "explain.enabled"}

#: Keys (and the flags of earlier argparse commands) of earlier versions, refused with what replaced them.
#: A dotted key also stands for the keys below it (root.x is data.root.x).
RENAMED_KEYS = {
    # train
    "ckpt_path": "ckpt",
    # how a model sees an image is the model's (model.preprocessing), not where the images are (data)
    **{f"data.{field.name}": f"model.preprocessing.{field.name}" for field in fields(Preprocessing)},
    # callbacks are the callbacks group's (conf/callbacks), each a YAML file
    "checkpoint.select": "callbacks=[default,best_checkpoint] (the best epoch; the last is evaluated by default)",
    "checkpoint.every_n_epochs": "callbacks.last_checkpoint.every_n_epochs",
    "ema": "callbacks=[default,ema] callbacks.ema.decay=<value>",
    "early_stopping": "callbacks=[default,early_stopping] callbacks.early_stopping.patience=<value>",
    "speed.nonfinite_check_steps": "callbacks.nonfinite_stop.every_n_steps",
    "model.metadata": "model.metadata_columns",
    "data.metadata": "data.metadata_table",
    "data.metadata_image_column": "data.metadata_table_image_column",
    # evaluate, predict, export: the names train uses
    "root": "data.root",
    "data_root": "data.root",
    "batch_size": "data.batch_size",
    "num_workers": "data.num_workers",
    "accelerator": "trainer.accelerator",
    "precision": "trainer.precision",
    "target_recall": "evaluation.target_recalls",
    "target_recalls": "evaluation.target_recalls",
    "bootstrap": "evaluation.bootstrap",
    "tta": "evaluation.tta",
    "flip_tta": "evaluation.tta",
    "split": "input",
    "output": "hydra.run.dir",
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore, where the primary configs' defaults name them."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)


def validate(cfg: DictConfig) -> Any:
    """The composed config as its typed settings (the range checks run); a SkinclfError names the first bad key."""
    try:
        return OmegaConf.to_object(cfg)
    except RangeError as error:
        raise SkinclfError(str(error)) from error
    except OmegaConfBaseException as error:
        raise SkinclfError(f"invalid config: {error}") from error


def recorded_unless_given(recorded: dict[str, Any] | None, composed: Any, given: list[str]) -> Any:
    """The settings of a group as a trained model recorded them, but for the keys the command line gives (``given``;
    "" for the group itself), which come from the composed settings; without a record, the composed."""
    if recorded is None or "" in given:
        return composed
    structured = OmegaConf.structured(composed)
    merged = OmegaConf.merge(structured, recorded)
    for key in given:
        OmegaConf.update(merged, key, OmegaConf.select(structured, key), merge=False)
    return OmegaConf.to_object(merged)
