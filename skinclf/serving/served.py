"""A trained model behind the server: the images of one or more requests in, each image's answer out.

A checkpoint or an ensemble folder predicts exactly as ``python -m skinclf.predict`` does, through the same
:class:`TrainedModel` and decision policy (the thresholds of each operating point, the temperature, the referral), so
that an answer equals predict's row for the same image: the uploaded images are written into a temporary folder and
predicted there. An ONNX file skinclf.export wrote is run by onnxruntime on the same eval dataset, with the policy its
JSON records.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import skinclf
from skinclf.config.schema import EvaluationSettings, ExplainSettings, Preprocessing, ServeSettings
from skinclf.core.errors import SkinclfError
from skinclf.data.dataset import eval_dataset
from skinclf.data.image_sets import Images
from skinclf.data.preprocessing import description as preprocessing_description
from skinclf.metrics.decisions import DecisionPolicy, with_decisions
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX
from skinclf.serving.recent import RecentScores
from skinclf.serving.uploads import RequestError, Upload
from skinclf.trained import TrainedModel, load_model
from skinclf.trained.explain import Explainer, explain_images
from skinclf.trained.inference import Inference, inference_trainer


class ServedModel(ABC):
    """A model the server answers with, its decision policy, and what GET /model says of it."""

    policy: DecisionPolicy
    #: Whether it can show where it looked (explain=true).
    explains: bool
    #: The novelty scores of the images it answered lately, for the set alarm (set by the worker that serves it).
    recent: RecentScores | None = None

    @property
    def validation_scores(self) -> np.ndarray | None:
        """The novelty scores of the model's own validation images, which the recent images are tested against;
        None where the model gives none."""
        return None

    @property
    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Who the model is: its run's record (name, architecture, seed, recipe...)."""

    @abstractmethod
    def card(self) -> dict[str, Any]:
        """The model's facts (GET /model): who it is, how it sees an image, what its score means, how it decides."""

    @abstractmethod
    def predictions(self, images: Images) -> pd.DataFrame:
        """predict's columns for the images: path, probability (ood_score and each diagnosis' where the model has
        them), error ("" where readable)."""

    def heatmaps(self, images: Images) -> list[str]:
        """Where it looked, per image: the heatmap's path below images.root ("" for an image that cannot be read).
        Only a model that ``explains`` is asked."""
        raise NotImplementedError

    def answer(self, requests: list[list[Upload]], explain: list[bool]) -> list[list[dict[str, Any]] | RequestError]:
        """Each request's answer, predicted together in one pass: one dict per image (see :func:`answer_of`), or why
        the request is refused (an image that cannot be decoded)."""
        with tempfile.TemporaryDirectory(prefix="skinclf-serve-") as folder:
            root = Path(folder)
            paths = []
            for r, uploads in enumerate(requests):
                for i, upload in enumerate(uploads):
                    path = Path(str(r), f"{i}{Path(upload.name).suffix.lower()}")
                    (root / path).parent.mkdir(exist_ok=True)
                    (root / path).write_bytes(upload.content)
                    paths.append(path.as_posix())
            images = Images(root, pd.DataFrame({"path": paths}), "the images of the requests")
            predicted = with_decisions(self.predictions(images), self.policy)
            if self.recent is not None and "ood_score" in predicted:
                self.recent.add(predicted["ood_score"].to_numpy())
            wanted = [asked for asked, uploads in zip(explain, requests, strict=True) for _ in uploads]
            overlays = self.overlays(images, wanted)
            answers: list[list[dict[str, Any]] | RequestError] = []
            row = 0
            for uploads in requests:
                try:
                    answers.append(
                        [
                            answer_of(u, predicted.iloc[row + i], overlays[row + i], self.policy)
                            for i, u in enumerate(uploads)
                        ]
                    )
                except RequestError as refused:  # this request alone: the others of the batch are answered
                    answers.append(refused)
                row += len(uploads)
        return answers

    def overlays(self, images: Images, wanted: list[bool]) -> list[str | None]:
        """The overlay of where the model looked (a base64 JPEG) for the images whose request asks for it."""
        overlays: list[str | None] = [None] * len(wanted)
        rows = [i for i, asked in enumerate(wanted) if asked]
        if not rows:
            return overlays
        asked = Images(images.root, images.table.iloc[rows].reset_index(drop=True), images.described)
        for i, heatmap in zip(rows, self.heatmaps(asked), strict=True):
            if heatmap:
                overlay = (images.root / heatmap).with_suffix(".jpg")
                overlays[i] = base64.b64encode(overlay.read_bytes()).decode()
        return overlays


class ServedCheckpoint(ServedModel):
    """A checkpoint or an ensemble folder, predicting as predict does, with the decision policy it gives for the
    evaluation settings."""

    explains = True

    def __init__(
        self, path: str, evaluation: EvaluationSettings, explain: ExplainSettings, serve: ServeSettings
    ) -> None:
        self.model: TrainedModel = load_model(path)
        refuse_metadata(path, bool(self.model.metadata_encoding))
        self.evaluation, self.explain = evaluation, explain
        # the largest batch of requests at the most images each, in one forward pass; the images are decoded here
        batch_size = serve.max_batch_size * serve.max_images_per_request
        self.inference = Inference(inference_trainer(serve.accelerator, progress_bar=False), batch_size, num_workers=0)
        self.policy = self.model.decision_policy(evaluation, self.inference)[0]

    @property
    def validation_scores(self) -> np.ndarray | None:
        validation = self.model.validation(self.inference, self.evaluation.tta)
        return validation["ood_score"].to_numpy() if "ood_score" in validation else None

    @property
    def identity(self) -> dict[str, Any]:
        return self.model.identity

    def card(self) -> dict[str, Any]:
        return {
            "skinclf_version": skinclf.__version__,
            "source": str(self.model.path),
            "run": self.identity,
            "input": preprocessing_description(self.model.preprocessing),
            "output": {"meaning": self.model.score_meaning, "diagnoses": self.model.diagnoses},
            "test_time_views": self.evaluation.tta,
            "decision_policy": self.policy.record(),
            "operating_points": self.policy.operating_points,
        }

    def predictions(self, images: Images) -> pd.DataFrame:
        return self.model.predict(images, self.inference, self.evaluation.tta, tolerant=True)

    def heatmaps(self, images: Images) -> list[str]:
        explainer = Explainer(self.model.classifiers, self.explain, self.evaluation.tta)
        return explain_images(explainer, images.root, images.table, self.model.preprocessing, images.root)


class ServedExport(ServedModel):
    """A model exported to ONNX by skinclf.export, run by onnxruntime with what its JSON says: the preprocessing, and
    the decision policy fixed at export (the temperature inside the model). It has no referral and shows no maps."""

    explains = False

    def __init__(self, path: str, serve: ServeSettings) -> None:
        import onnxruntime  # optional dependency: pip install 'skinclf[export]'

        self.path = Path(path)
        described_at = self.path.with_name(self.path.name + ".json")
        if not described_at.is_file():
            raise SkinclfError(f"ckpt={path} has no {described_at.name} beside it: serve a model skinclf.export wrote")
        self.described = json.loads(described_at.read_text())
        refuse_metadata(path, self.described["metadata"] is not None)
        self.preprocessing = Preprocessing(
            **{f.name: self.described["input"][f.name] for f in dataclasses.fields(Preprocessing)}
        )
        # its thresholds as exported; no referral: the exported model gives no ood_score
        policy = DecisionPolicy.of_record(self.described["decision_policy"], temperature_inside=True)
        self.policy = dataclasses.replace(policy, referral=None)
        providers = ["CUDAExecutionProvider"] if serve.accelerator == "cuda" else []
        self.session = onnxruntime.InferenceSession(str(self.path), providers=[*providers, "CPUExecutionProvider"])

    @property
    def identity(self) -> dict[str, Any]:
        return self.described["run"]

    def card(self) -> dict[str, Any]:
        facts = ("input", "output", "calibration", "decision_policy", "parity_check")
        return {
            "skinclf_version": skinclf.__version__,
            "source": str(self.path),
            "run": self.identity,
            **{key: self.described[key] for key in facts},
            "operating_points": self.policy.operating_points,
        }

    def predictions(self, images: Images) -> pd.DataFrame:
        dataset = eval_dataset(self.preprocessing, images.root, images.table, tolerate_unreadable=True)
        items = [dataset[i] for i in range(len(dataset))]
        batch = torch.stack([item["image"] for item in items]).numpy()
        outputs = self.session.run(None, {"image": batch})
        table = pd.DataFrame({"path": images.table["path"], "probability": outputs[0]})
        for i, name in enumerate(self.described["output"]["diagnoses"] or []):
            table[PROBABILITY_PREFIX + name] = outputs[1][:, i]
        return table.assign(error=[item["error"] for item in items])


def refuse_metadata(path: str, takes_metadata: bool) -> None:
    if takes_metadata:
        raise SkinclfError(
            f"ckpt={path} takes metadata beside each image: the server takes images alone; use "
            "python -m skinclf.predict with a table"
        )


def served_model(
    ckpt: str, evaluation: EvaluationSettings, explain: ExplainSettings, serve: ServeSettings
) -> ServedModel:
    """The model of ckpt=: an ONNX file skinclf.export wrote, or a checkpoint or an ensemble folder."""
    if ckpt.endswith(".onnx"):
        return ServedExport(ckpt, serve)
    return ServedCheckpoint(ckpt, evaluation, explain, serve)


def answer_of(upload: Upload, row: pd.Series, overlay: str | None, policy: DecisionPolicy) -> dict[str, Any]:
    """One image's answer, as predict's row for it says: the probability, the decision at each operating point (and
    at each the policy left undecided, why not), the out-of-distribution score and referral where the model has
    them, and the overlay when asked for."""
    if row["error"]:
        raise RequestError(422, f"{upload.name} could not be read: {row['error']}")
    answer: dict[str, Any] = {"name": upload.name, "probability": float(row["probability"])}
    per_diagnosis = {
        c.removeprefix(PROBABILITY_PREFIX): float(row[c]) for c in row.index if c.startswith(PROBABILITY_PREFIX)
    }
    if per_diagnosis:
        answer["diagnosis_probabilities"] = per_diagnosis
    answer["decisions"] = {c.removeprefix("decision_"): row[c] for c in row.index if c.startswith("decision_")}
    if policy.undecided:
        answer["undecided"] = {f"at_recall_{key}": u.reason for key, u in policy.undecided.items()}
    if "ood_score" in row:
        answer["ood_score"] = float(row["ood_score"])
    if "unusual" in row:
        answer["unusual"] = float(row["unusual"])
    if "refer" in row:
        answer["refer"] = row["refer"] == "true"
    if overlay is not None:
        answer["overlay_jpeg"] = overlay
    return answer
