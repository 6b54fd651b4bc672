"""What a LesionClassifier is built from: the groups of the config it uses, as they are, and what the data adds.

The model (with its preprocessing), optim, loss and speed groups come straight from the typed settings
(``skinclf.config.schema``), so that a new setting of one of them is its YAML line and its typed field; the head and the
metadata encoding are derived from the data. ``save_hyperparameters`` stores them as plain dicts, and
:func:`classifier_settings` turns those back into the typed groups, which is how
``LesionClassifier.load_from_checkpoint(path)`` rebuilds a model from its checkpoint alone. A checkpoint records the
skinclf version that wrote it; one of another major or minor version is refused (skinclf.models.checkpoints), not
patched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import OmegaConf

from skinclf.config.schema import LossSettings, ModelSettings, OptimSettings, SpeedSettings, validate

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
    head: Head
    metadata_encoding: Optional[list[Any]]


def classifier_settings(stored: ClassifierSettings | dict[str, Any]) -> ClassifierSettings:
    """The typed settings, from themselves or from the plain dict a checkpoint stores (the range checks run)."""
    if isinstance(stored, ClassifierSettings):
        return stored
    return validate(OmegaConf.merge(OmegaConf.structured(ClassifierSettings), stored))


def as_hyperparameters(settings: ClassifierSettings) -> dict[str, Any]:
    """The settings as plain dicts and lists: what a checkpoint can hold and load without running code."""
    return dataclasses.asdict(settings)
