"""A trained model as the commands use it: a checkpoint, or a folder written by skinclf.ensemble, as one object.

evaluate, predict, export and ensemble work through this module and nothing below it. :func:`load_model`
tells a checkpoint from an ensemble folder and returns a :class:`TrainedModel` that predicts images
(with their metadata, with test-time views), knows its preprocessing, gives its decision policy for an
evaluation setting (skinclf.metrics.decisions; chosen on its validation predictions or a clinic's
sample), the evaluation settings it was made with and the splits of the run that made it; what an
export of it takes and gives. :func:`find_runs` and :class:`Run` read the folders runs leave (report and
ensemble compare and combine them).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from skinclf.data.inputs import read_inputs
from skinclf.data.records import check_and_hash, data_root, read_records
from skinclf.data.table import SPLIT_NAMES
from skinclf.errors import SkinclfError, examples
from skinclf.explain import evaluation_explainer
from skinclf.fitting.checkpoints import load_classifier, run_split, stored_run_info, stored_validation
from skinclf.inference import Inference, adapted_to, predict_images
from skinclf.metrics.combining import EnsembleProbabilities, combine, combined_columns, without_member_scores
from skinclf.metrics.decisions import VALIDATION, DecisionPolicy, choose_policy, referral_of
from skinclf.models import LesionClassifier
from skinclf.results import ImagesAsSeen
from skinclf.schema import DataSettings, EvaluationSettings, ExplainSettings, Preprocessing, recorded_unless_given

#: metrics.json of an ensemble says so in run.kind.
ENSEMBLE = "ensemble"
#: What of an ensemble's metrics.json says who it is.
ENSEMBLE_IDENTITY = ("kind", "name", "combine", "members", "members_test_auroc")


@dataclass(frozen=True)
class Images:
    """Images to run a model on: ``table.path`` relative to ``root``, with labels and the table's other columns
    where known; ``described`` says what they are (the test split, a folder...)."""

    root: Path
    table: pd.DataFrame
    described: str


def table_images(data: DataSettings, split: str | None) -> Images:
    """Every usable row of the data group's table(s), checked as training checks them, or one split of them."""
    root = data_root(data.root, data)
    records, _, _ = check_and_hash(read_records(root, data), root, data.check_images, data.skip_corrupt, False)
    described = ", ".join(str(t) for t in ([data.table] if data.table else [s["table"] for s in data.sources]))
    if split is not None:
        if not data.split_column:
            raise SkinclfError(
                f"input={split} names a split, but the table has none: set data.split_column to its split "
                "column, or leave input out to evaluate every usable row"
            )
        records = records[records["split"] == SPLIT_NAMES.get(split, split)]
        if records.empty:
            raise SkinclfError(f"no usable row of {described} is in the split {split}")
        described += f" ({split} split)"
    return Images(root, records.drop(columns=["split"]).reset_index(drop=True), described)


# -- the folders runs leave ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A finished run's folder (a training run, an evaluation or an ensemble): its metrics.json and predictions."""

    folder: Path
    metrics: dict

    @cached_property
    def val(self) -> pd.DataFrame:
        return self._predictions("val")

    @cached_property
    def test(self) -> pd.DataFrame:
        return self._predictions("test")

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint the run evaluated; None for evaluations and ensembles, which trained nothing."""
        recorded = self.metrics.get("run", {}).get("checkpoint")
        if recorded is None or not (self.folder / "checkpoints").is_dir():
            return None
        return self.folder / recorded

    @property
    def recorded_evaluation(self) -> dict[str, Any]:
        """The evaluation settings it was evaluated with."""
        return self.metrics["run"]["evaluation"]

    @property
    def tta(self) -> str:
        """The test-time views its predictions were made with (evaluation.tta)."""
        return self.recorded_evaluation["tta"]

    def _predictions(self, split: str) -> pd.DataFrame:
        path = self.folder / f"predictions_{split}.csv"
        if not path.is_file():
            raise SkinclfError(f"{self.folder} is not a finished run: {path.name} is missing")
        return pd.read_csv(path, dtype={"path": str})


def read_run(folder: Path) -> Run:
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        raise SkinclfError(f"{folder} is not the folder of a finished run: it has no metrics.json")
    return Run(folder, json.loads(metrics.read_text()))


def find_runs(folders: Sequence[str | Path]) -> list[Run]:
    """Every run (a folder holding metrics.json) at or below the folders, in order."""
    runs = []
    for folder in map(Path, folders):
        folder = folder.expanduser()
        if not folder.is_dir():
            raise SkinclfError(f"{folder} is not a folder: name run or multirun folders in runs=[...]")
        found = sorted(p.parent for p in folder.rglob("metrics.json"))
        if not found:
            raise SkinclfError(f"{folder} holds no run (no metrics.json below it)")
        runs += [read_run(run_folder) for run_folder in found]
    return runs


# -- trained models ---------------------------------------------------------------------------------


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
        images of evaluation.threshold_source (a clinic's own sample), or its validation predictions. Its referral
        is always chosen on its own validation: a share of the images it knows."""
        validation = self.validation(inference, evaluation.tta, data_root)
        referral = referral_of(validation, evaluation.referral_rate, self.described_validation)
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
        return choose_policy(sample, chosen_on, evaluation, self.malignant_diagnoses, referral), sample

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

    def seen(self, root: Path, explain: ExplainSettings, tta: str = "none") -> ImagesAsSeen:
        """How the model sees images below root, for an evaluation; its maps (its classifiers', averaged) for the error
        gallery, and for every test image with explain.enabled."""
        explainer = evaluation_explainer(self.classifiers, explain, tta)
        masks = explain.mask_column if explain.enabled else None
        return ImagesAsSeen(root, self.preprocessing, explainer, explain.enabled, masks)

    @abstractmethod
    def training_images(self) -> Images:
        """The images the model trained on (an ensemble: its members')."""

    @abstractmethod
    def internal_run(self) -> Run | None:
        """The folder of the evaluation made with the model itself (its run's test split), if it is there."""

    # -- what an export of it takes and gives (skinclf.commands.export) --

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


class CheckpointModel(TrainedModel):
    """A checkpoint written by skinclf.train."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.classifier, self.checkpoint = load_classifier(path)

    @property
    def settings(self) -> Any:
        return self.classifier.settings

    @property
    def identity(self) -> dict[str, Any]:
        model = self.settings.model
        return {"arch": model.arch, "weights": model.weights, **stored_run_info(self.checkpoint)}

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
        if not (folder / "metrics.json").is_file():
            return None
        run = read_run(folder)
        return run if run.checkpoint is not None and run.checkpoint.resolve() == self.path.resolve() else None

    def probability_model(self) -> nn.Module:
        return self.classifier.probability_model()


class EnsembleModel(TrainedModel):
    """A folder written by skinclf.ensemble: its members' checkpoints combined by its rule, its thresholds chosen
    on its own validation predictions. The members' run folders must still be where they were."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run = read_run(path)
        recorded = self.run.metrics["run"]
        self.rule: str = recorded["combine"]
        folders = [Path(m["run_folder"]) for m in recorded["members"]]
        gone = [str(f) for f in folders if not (f / "metrics.json").is_file()]
        if gone:
            raise SkinclfError(
                f"the ensemble {path} combines runs that are no longer there: {examples(gone)}; "
                "run skinclf.ensemble again on the runs where they are now"
            )
        self.member_runs = [read_run(folder) for folder in folders]
        self.members = [CheckpointModel(member.checkpoint) for member in self.member_runs]

    @property
    def identity(self) -> dict[str, Any]:
        run = self.run.metrics["run"]
        return {key: run[key] for key in ENSEMBLE_IDENTITY if key in run}

    @property
    def recorded_evaluation(self) -> dict[str, Any]:
        return self.run.recorded_evaluation

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
        return f"the ensemble's validation ({self.run.metrics['run']['thresholds_chosen_on']})"

    def validation(self, inference: Inference, tta: str, data_root: str | None = None) -> pd.DataFrame:
        """Its own: the members' pooled out-of-fold (or averaged) validation predictions, combined."""
        self._check_tta(tta)
        return self.run.val

    def split(self, name: str, data_root: str | None = None) -> Images:
        if name != "test":  # each member validated (and trained) on images of its own
            raise SkinclfError(f"an ensemble's members share only their test split: input={name} names none")
        return self.members[0].split(name, data_root)

    def training_images(self) -> Images:
        return union([member.training_images() for member in self.members])

    def internal_run(self) -> Run | None:
        return self.run

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


def union(sets: list[Images]) -> Images:
    """The images of several sets, each once, by their absolute paths (the folds of a cross-validation trained on
    the same pool)."""
    absolute = [images.table.assign(path=[str(images.root / p) for p in images.table["path"]]) for images in sets]
    table = pd.concat(absolute).drop_duplicates("path").reset_index(drop=True)
    return Images(Path("/"), table, " and ".join(dict.fromkeys(images.described for images in sets)))


def is_ensemble(path: Path) -> bool:
    """True for a folder written by skinclf.ensemble."""
    metrics = path / "metrics.json"
    return (
        path.is_dir() and metrics.is_file() and json.loads(metrics.read_text()).get("run", {}).get("kind") == ENSEMBLE
    )


def load_model(path: str | Path) -> TrainedModel:
    """The trained model at path: a checkpoint written by skinclf.train, or a folder written by skinclf.ensemble."""
    path = Path(path).expanduser()
    if path.is_dir() and not is_ensemble(path):
        raise SkinclfError(
            f"{path} is a folder but not one written by skinclf.ensemble: name a .ckpt file (a run's "
            "checkpoints/last.ckpt) or an ensemble's folder"
        )
    return EnsembleModel(path) if path.is_dir() else CheckpointModel(path)
