"""A trained model as the commands use it, whether one checkpoint or an ensemble of runs: what every command needs of
it (:class:`TrainedModel`). :func:`skinclf.trained.load_model` tells a checkpoint from an ensemble folder.

A trained model predicts images (with their metadata, with test-time views), knows its preprocessing, gives its
decision policy for an evaluation setting (skinclf.metrics.decisions; chosen on its validation predictions or a
clinic's sample), the evaluation settings it was made with and the splits of the run that made it, and what an export
of it takes and gives.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from skinclf.config.schema import EvaluationSettings, Preprocessing, recorded_unless_given
from skinclf.core.errors import SkinclfError
from skinclf.data.image_sets import Images
from skinclf.data.inputs import read_inputs
from skinclf.metrics.decisions import DecisionPolicy, choose_policy, referral_of
from skinclf.models import LesionClassifier
from skinclf.runs import Run
from skinclf.trained.inference import Inference


class TrainedModel(ABC):
    """What every command needs of a trained model, whether one checkpoint or an ensemble of runs."""

    path: Path

    @property
    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Who the model is, as metrics.json records it (name, architecture, seed...; an ensemble's members)."""

    @property
    @abstractmethod
    def recorded_evaluation(self) -> dict[str, Any]:
        """The evaluation settings the model was evaluated with when it was made."""

    def evaluation_settings(self, composed: EvaluationSettings, given: list[str]) -> EvaluationSettings:
        """The evaluation settings the model was made with, but for the keys the command line gives (``given``)."""
        return recorded_unless_given(self.recorded_evaluation, composed, given)

    @property
    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How it sees an image (an ensemble: its first member; they may differ, see probability_model)."""

    @abstractmethod
    def predict(self, images: Images, inference: Inference, tta: str, tolerant: bool = False) -> pd.DataFrame:
        """The images' predictions (path, label where known, probability, the table's other columns); ``tolerant``:
        an unreadable image gets its reason in the column error instead of stopping the run."""

    @abstractmethod
    def adapt_batchnorm(
        self, images: Images, inference: Inference, probabilities: np.ndarray, training_share: float
    ) -> int:
        """Re-estimate its batch-norm statistics on the images, in memory (see skinclf.models.adaptation), guarded
        by its probabilities of them; returns how many layers were adapted."""

    @abstractmethod
    def validation(self, inference: Inference, tta: str, data_root: str | None = None) -> pd.DataFrame:
        """The validation predictions, made with the test-time views ``tta``, on which its thresholds are chosen."""

    @property
    @abstractmethod
    def described_validation(self) -> str:
        """What its validation predictions are, where a policy says what it was chosen on."""

    def decision_policy(
        self, evaluation: EvaluationSettings, inference: Inference, data_root: str | None = None
    ) -> tuple[DecisionPolicy, pd.DataFrame]:
        """Its decision policy for the evaluation settings, and the labelled predictions it was chosen on: the
        images of evaluation.threshold_source (a clinic's own sample: refused where it cannot decide every target),
        or its validation predictions (the targets it cannot decide are left undecided). Its referral is always
        chosen on its own validation: a share of the images it knows."""
        validation = self.validation(inference, evaluation.tta, data_root)
        source = evaluation.threshold_source
        if source is None:
            sample, chosen_on = validation, self.described_validation
        else:
            root, table = read_inputs(source)
            if "label" not in table.columns:
                raise SkinclfError(
                    f"evaluation.threshold_source={source} has no labels: it needs benign/ and malignant/ subfolders "
                    "or a CSV with path,label columns, to choose thresholds on"
                )
            sample = self.predict(Images(root, table, source), inference, evaluation.tta)
            malignant = int(sample["label"].sum())
            chosen_on = f"{source} (evaluation.threshold_source: {len(sample)} images, {malignant} malignant)"
        # a sample named to decide on must decide; the model's own validation may leave targets undecided
        must_decide = source is not None
        policy = choose_policy(sample, chosen_on, evaluation, self.malignant_diagnoses, must_decide=must_decide)
        referral = referral_of(
            policy.calibrated(validation), evaluation.referral_rate, self.described_validation, policy.thresholds
        )
        return dataclasses.replace(policy, referral=referral), sample

    @abstractmethod
    def split(self, name: str, data_root: str | None = None) -> Images:
        """A split (train, val or test) of the run that made it; data_root= where the data moved."""

    @property
    @abstractmethod
    def malignant_diagnoses(self) -> list[str] | None:
        """For a diagnosis head, the diagnoses that are malignant; None for one logit (and for an ensemble)."""

    @property
    @abstractmethod
    def classifiers(self) -> list[LesionClassifier]:
        """Its classifiers that take its images (an ensemble: the members with its first member's preprocessing)."""

    @abstractmethod
    def training_images(self) -> Images:
        """The images the model trained on (an ensemble: its members')."""

    @abstractmethod
    def internal_run(self) -> Run | None:
        """The folder of the evaluation made with the model itself (its run's test split), if it is there."""

    # -- what an export of it takes and gives (skinclf.export) --

    @abstractmethod
    def probability_model(self) -> nn.Module:
        """One module from uint8 images (and encoded metadata) to probabilities: what export writes."""

    @property
    @abstractmethod
    def diagnoses(self) -> list[str] | None:
        """The diagnoses whose probabilities it gives besides the probability of malignancy, if any."""

    @property
    @abstractmethod
    def metadata_encoding(self) -> list[dict] | None:
        """How its metadata input is encoded (skinclf.data.metadata), if it reads metadata."""

    @property
    @abstractmethod
    def score_meaning(self) -> str:
        """What its score of malignancy is, in words for an export's description."""

    @property
    def score_step(self) -> float:
        """How far an exported score may land from PyTorch's where the score is a step function (0: it is not)."""
        return 0.0
