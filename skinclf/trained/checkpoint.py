"""A checkpoint written by skinclf.train, as a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from skinclf.config.schema import Preprocessing
from skinclf.core.errors import SkinclfError
from skinclf.data.image_sets import Images
from skinclf.metrics.decisions import VALIDATION
from skinclf.models import LesionClassifier
from skinclf.models.checkpoints import load_classifier, run_split, stored_run_info, stored_validation
from skinclf.runs import METRICS, Run, read_run
from skinclf.trained.inference import Inference, adapted_to, predict_images
from skinclf.trained.model import TrainedModel


class CheckpointModel(TrainedModel):
    """A checkpoint written by skinclf.train."""

    def __init__(self, path: Path, loaded: tuple[LesionClassifier, dict[str, Any]] | None = None) -> None:
        """The checkpoint at path; ``loaded``: its classifier and contents where they are already read."""
        self.path = path
        self.classifier, self.checkpoint = loaded or load_classifier(path)

    @property
    def settings(self) -> Any:
        return self.classifier.settings

    @property
    def identity(self) -> dict[str, Any]:
        return stored_run_info(self.checkpoint)

    @property
    def recorded_evaluation(self) -> dict[str, Any]:
        return stored_run_info(self.checkpoint)["evaluation"]

    @property
    def preprocessing(self) -> Preprocessing:
        return self.settings.model.preprocessing

    @property
    def malignant_diagnoses(self) -> list[str] | None:
        return self.settings.head.malignant_diagnoses

    @property
    def diagnoses(self) -> list[str] | None:
        return self.settings.head.diagnoses

    @property
    def metadata_encoding(self) -> list[dict] | None:
        return self.settings.metadata_encoding

    @property
    def score_meaning(self) -> str:
        return "probability of malignancy, one per image; diagnosis_probabilities: one per image and diagnosis"

    @property
    def classifiers(self) -> list[LesionClassifier]:
        return [self.classifier]

    def predict(self, images: Images, inference: Inference, tta: str, tolerant: bool = False) -> pd.DataFrame:
        return predict_images(inference, self.classifier, images.root, images.table, tolerant, tta)

    def adapt_batchnorm(
        self, images: Images, inference: Inference, probabilities: np.ndarray, training_share: float
    ) -> int:
        return adapted_to(inference, self.classifier, images.root, images.table, probabilities, training_share)

    @property
    def described_validation(self) -> str:
        return VALIDATION

    def validation(self, inference: Inference, tta: str, data_root: str | None = None) -> pd.DataFrame:
        """Stored in the checkpoint, or else predicted on its run's validation split with the same views, so that
        thresholds are chosen on scores of the kind they are applied to."""
        stored = stored_validation(self.checkpoint, tta)
        if stored is not None:
            return stored
        try:
            images = self.split("val", data_root)
        except SkinclfError as error:
            why = "holds no validation predictions" + (f" with evaluation.tta={tta}" if tta != "none" else "")
            raise SkinclfError(
                f"the checkpoint {self.path} {why} to choose thresholds on, and its validation split cannot be read "
                f"({error}): pass data.root=<data root> if the data moved, or threshold=<value> to predict"
            ) from error
        return self.predict(images, inference, tta)

    def split(self, name: str, data_root: str | None = None) -> Images:
        root, table = run_split(self.checkpoint, name, data_root)
        return Images(root, table, f"{name} split")

    def training_images(self) -> Images:
        return self.split("train")

    def internal_run(self) -> Run | None:
        """The run folder that holds this checkpoint, if its metrics.json evaluated this very checkpoint."""
        folder = self.path.parent.parent
        if not (folder / METRICS).is_file():
            return None
        run = read_run(folder)
        return run if run.checkpoint is not None and run.checkpoint.resolve() == self.path.resolve() else None

    def probability_model(self) -> nn.Module:
        return self.classifier.probability_model()
