"""A folder written by skinclf.ensemble, as a trained model: its members' checkpoints combined by its rule
(skinclf.metrics.combining), and the combination as one module for export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from skinclf.config.schema import Preprocessing
from skinclf.core.errors import SkinclfError, examples
from skinclf.data.image_sets import Images, union
from skinclf.metrics.combining import combine, combined_columns, without_member_scores
from skinclf.models import LesionClassifier
from skinclf.runs import METRICS, Run, ensemble_identity, read_run
from skinclf.trained.checkpoint import CheckpointModel
from skinclf.trained.exported import EnsembleProbabilities
from skinclf.trained.inference import Inference
from skinclf.trained.model import TrainedModel


class EnsembleModel(TrainedModel):
    """Member runs' checkpoints combined by a rule, its thresholds chosen on its own validation predictions (the
    members' combined): made by skinclf.ensemble, or read from the folder it wrote (:meth:`of_folder`; the members' run
    folders must still be where they were)."""

    def __init__(
        self,
        member_runs: list[Run],
        rule: str,
        validation: pd.DataFrame,
        described_validation: str,
        recorded_evaluation: dict[str, Any],
        path: Path,
        internal: Run | None = None,
    ) -> None:
        """``validation``: the combined validation predictions, what they are (``described_validation``);
        ``recorded_evaluation``: the evaluation settings it was made with; ``path``: its folder; ``internal``: the
        evaluation it was made with, once written."""
        self.member_runs, self.rule, self.path, self.internal = member_runs, rule, path, internal
        self._validation, self._described_validation = validation, described_validation
        self._recorded_evaluation = recorded_evaluation
        self.members = [CheckpointModel(member.checkpoint) for member in member_runs]

    @classmethod
    def of_folder(cls, path: Path) -> EnsembleModel:
        """The ensemble a skinclf.ensemble run wrote into path."""
        run = read_run(path)
        recorded = run.metrics["run"]
        folders = [Path(m["run_folder"]) for m in recorded["members"]]
        gone = [str(f) for f in folders if not (f / METRICS).is_file()]
        if gone:
            raise SkinclfError(
                f"the ensemble {path} combines runs that are no longer there: {examples(gone)}; "
                "run skinclf.ensemble again on the runs where they are now"
            )
        described = f"the ensemble's validation ({recorded['thresholds_chosen_on']})"
        members = [read_run(folder) for folder in folders]
        return cls(members, recorded["combine"], run.val, described, run.recorded_evaluation, path, run)

    @property
    def identity(self) -> dict[str, Any]:
        return ensemble_identity(self.member_runs, self.rule)

    @property
    def recorded_evaluation(self) -> dict[str, Any]:
        return self._recorded_evaluation

    @property
    def preprocessing(self) -> Preprocessing:
        return self.members[0].preprocessing

    @property
    def malignant_diagnoses(self) -> list[str] | None:
        return None  # its score is a combination of its members' probabilities of malignancy

    @property
    def diagnoses(self) -> list[str] | None:
        return None

    @property
    def metadata_encoding(self) -> list[dict] | None:
        return None  # one exported input cannot carry each member's own encoding (see probability_model)

    @property
    def score_meaning(self) -> str:
        averaged = "probabilities" if self.rule == "mean" else "percentiles among their own validation probabilities"
        return f"the ensemble's score of malignancy, one per image: the {self.rule} of its members' {averaged}"

    @property
    def score_step(self) -> float:
        """A rank ensemble's percentile is a step function: a probability within float precision of a member's
        validation value may land one step (1 / (2 x its validation images)) away in the export."""
        if self.rule != "rank":
            return 0.0
        return max(1 / (2 * len(run.val)) for run in self.member_runs) / len(self.members)

    @property
    def classifiers(self) -> list[LesionClassifier]:
        return [m.classifier for m in self.members if m.preprocessing == self.preprocessing]

    @property
    def tta(self) -> str:
        """The test-time views its members were evaluated with, on which its thresholds were chosen."""
        return self.member_runs[0].tta

    def _check_tta(self, tta: str) -> None:
        if tta != self.tta:
            raise SkinclfError(
                f"the ensemble {self.path} was evaluated with evaluation.tta={self.tta}, and its thresholds were "
                f"chosen on those scores: pass evaluation.tta={self.tta}"
            )

    def predict(self, images: Images, inference: Inference, tta: str, tolerant: bool = False) -> pd.DataFrame:
        """Every member's predictions (each with its own preprocessing and metadata), combined by its rule."""
        self._check_tta(tta)
        per_member = [m.predict(images, inference, tta, tolerant) for m in self.members]
        predictions = without_member_scores(per_member[0])
        for column, how in combined_columns(self.member_runs, self.rule).items():
            predictions[column] = combine(self.member_runs, [p[column].to_numpy() for p in per_member], how, column)
        return predictions

    def adapt_batchnorm(
        self, images: Images, inference: Inference, probabilities: np.ndarray, training_share: float
    ) -> int:
        return sum(m.adapt_batchnorm(images, inference, probabilities, training_share) for m in self.members)

    @property
    def described_validation(self) -> str:
        return self._described_validation

    def validation(self, inference: Inference, tta: str, data_root: str | None = None) -> pd.DataFrame:
        """Its own: the members' pooled out-of-fold (or averaged) validation predictions, combined."""
        self._check_tta(tta)
        return self._validation

    def split(self, name: str, data_root: str | None = None) -> Images:
        if name != "test":  # each member validated (and trained) on images of its own
            raise SkinclfError(f"an ensemble's members share only their test split: input={name} names none")
        return self.members[0].split(name, data_root)

    def training_images(self) -> Images:
        return union([member.training_images() for member in self.members])

    def internal_run(self) -> Run | None:
        return self.internal

    def probability_model(self) -> nn.Module:
        """The members as one module, combined as evaluated; only for members that one exported input can feed."""
        if self.tta != "none":
            raise SkinclfError(
                f"the members of {self.path} were evaluated with evaluation.tta={self.tta}, so its thresholds (and "
                "ranks) hold for scores averaged over views, which one exported model does not make: predict with "
                "python -m skinclf.predict ckpt=<the ensemble folder>, or make an ensemble of runs evaluated without"
            )
        sizes = {(m.preprocessing.resize_size, m.preprocessing.crop_size) for m in self.members}
        if len(sizes) > 1:
            raise SkinclfError(
                f"the members of {self.path} take images of different sizes (resize, crop: {examples(sorted(sizes))}):"
                " one exported model takes one size; use python -m skinclf.predict ckpt=<the ensemble folder> instead"
            )
        if any(m.metadata_encoding for m in self.members):
            raise SkinclfError(
                f"the members of {self.path} read metadata, each encoded with its own training split's statistics, "
                "which one exported input cannot carry: use python -m skinclf.predict ckpt=<the ensemble folder>, "
                "or export each member's checkpoint"
            )
        references = [torch.tensor(m.val["probability"].to_numpy()) for m in self.member_runs]
        members = [m.probability_model() for m in self.members]
        return EnsembleProbabilities(members, references if self.rule == "rank" else None).eval()
