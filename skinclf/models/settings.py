"""What a LesionClassifier is built from: the groups of the config it uses, as they are, and what the data adds.

The model, optim, loss and speed groups come straight from the typed settings (``skinclf.schema``),
so that a new setting of one of them is its YAML line and its typed field; the preprocessing, the
head and the metadata encoding are derived from the data. ``save_hyperparameters`` stores them as
plain dicts, and :func:`classifier_settings` turns those back into the typed groups, which is how
``LesionClassifier.load_from_checkpoint(path)`` rebuilds a model from its checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import OmegaConf

from skinclf.schema import LossSettings, ModelSettings, OptimSettings, Preprocessing, SpeedSettings, validate

# OmegaConf reads the annotations at run time: keep typing.Optional/Any, no "X | None".
# ruff: noqa: UP045


@dataclass
class Head:
    """The classifier's outputs: one logit (task=binary), or one per diagnosis (task=diagnosis), the malignant
    ones named, each weighed by class_weights in the loss."""

    diagnoses: Optional[list[str]]
    malignant_diagnoses: Optional[list[str]]
    class_weights: Optional[list[float]]


@dataclass
class ClassifierSettings:
    """Everything a LesionClassifier is made of; ``metadata_encoding`` (see skinclf.data.metadata) when it reads
    metadata beside the image, else None."""

    model: ModelSettings
    optim: OptimSettings
    loss: LossSettings
    speed: SpeedSettings
    preprocessing: Preprocessing
    head: Head
    metadata_encoding: Optional[list[Any]]


def shipped_defaults() -> dict[str, Any]:
    """The shipped values of the config groups a classifier takes as they are: what a checkpoint written before a
    setting existed is read with (conf/model/torchvision.yaml, conf/optim/adam.yaml, train.yaml's loss and speed,
    and of the preprocessing, conf/data/folder.yaml's colour constancy, and whole JPEG decodes)."""
    conf = importlib.resources.files("skinclf.conf")
    train = OmegaConf.load(conf / "train.yaml")
    data = OmegaConf.load(conf / "data" / "folder.yaml")
    return {
        "model": OmegaConf.load(conf / "model" / "torchvision.yaml"),
        "optim": OmegaConf.load(conf / "optim" / "adam.yaml"),
        "loss": train.loss,
        "speed": train.speed,
        # a checkpoint from before DCT scaling was trained on whole decodes
        "preprocessing": {"color_constancy": data.color_constancy, "jpeg_dct_scaling": False},
    }


def classifier_settings(stored: ClassifierSettings | dict[str, Any]) -> ClassifierSettings:
    """The typed settings, from themselves or from the plain dict a checkpoint stores, a setting it lacks taking
    its shipped value (the range checks run)."""
    if isinstance(stored, ClassifierSettings):
        return stored
    return validate(OmegaConf.merge(OmegaConf.structured(ClassifierSettings), shipped_defaults(), stored))


def as_hyperparameters(settings: ClassifierSettings) -> dict[str, Any]:
    """The settings as plain dicts and lists: what a checkpoint can hold and load without running code."""
    return dataclasses.asdict(settings)


#: The hyperparameters of checkpoints written before the settings were grouped, by their group in ClassifierSettings.
FLAT_HYPERPARAMETERS = {
    "model": {"library": "library", "arch": "arch", "weights": "weights", "metadata_dropout": "metadata_dropout"},
    "optim": {"optimizer": "optimizer", "lr": "lr", "kwargs": "optimizer_kwargs", "warmup_epochs": "warmup_epochs"},
    "loss": {"pos_weight": "pos_weight"},
    "speed": {"channels_last": "channels_last"},
    "preprocessing": {"resize_size": "resize_size", "crop_size": "crop_size", "mean": "mean", "std": "std"},
    "head": {"diagnoses": "diagnoses", "malignant_diagnoses": "malignant_diagnoses", "class_weights": "class_weights"},
    "metadata_encoding": "metadata_encoding",
}


def stored_model(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The model group a checkpoint's hyperparameters record (library, arch, weights...), shipped values filling
    in what it lacks, without building the model."""
    stored = grouped(hyperparameters)["settings"].get("model", {})
    return OmegaConf.to_container(OmegaConf.merge(shipped_defaults()["model"], stored))


def grouped(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyperparameters in today's form; those of earlier versions (one flat list of keyword
    arguments) regrouped; what they lack takes its shipped value (:func:`classifier_settings`)."""
    if "settings" in hyperparameters:
        return hyperparameters
    settings: dict[str, Any] = {}
    for group, names in FLAT_HYPERPARAMETERS.items():
        if isinstance(names, str):
            settings[group] = hyperparameters.get(names)
        else:
            settings[group] = {key: hyperparameters[old] for key, old in names.items() if old in hyperparameters}
    settings["model"]["metadata_columns"] = [entry["column"] for entry in settings["metadata_encoding"] or []]
    return {"settings": settings}
