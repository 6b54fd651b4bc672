"""A trained model behind the server: the images of one or more requests in, each image's answer out.

The server predicts exactly as ``python -m skinclf.predict`` does, through the same :class:`TrainedModel` and
decision policy (the thresholds of each operating point, the temperature, the referral), so that an answer equals
predict's row for the same image: the uploaded images are written into a temporary folder and predicted there.
"""

from __future__ import annotations

import base64
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, UnidentifiedImageError

import skinclf
from skinclf.artifact import Images, TrainedModel, load_model
from skinclf.data.preprocessing import description as preprocessing_description
from skinclf.errors import SkinclfError
from skinclf.explain import Explainer, explain_images
from skinclf.inference import Inference, inference_trainer
from skinclf.metrics.decisions import DecisionPolicy, with_decisions
from skinclf.metrics.diagnosis import PROBABILITY_PREFIX
from skinclf.schema import EvaluationSettings, ExplainSettings, ServeSettings


@dataclass(frozen=True)
class Upload:
    """One image as a request sent it: its name (the file's name, or the one given in JSON) and its bytes."""

    name: str
    content: bytes


#: What /predict takes, for its refusals.
USAGE = 'send images as multipart fields "image", or JSON {"images": [{"name": "a.jpg", "data": "<base64>"}]}'


class RequestError(Exception):
    """A request the server answers with an HTTP error instead of predictions; ``status`` is its code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def uploads_of(payload: Any, limits: ServeSettings) -> tuple[list[Upload], bool]:
    """The images of a request's JSON body (``{"images": [{"name": ..., "data": <base64>}], "explain": false}``; the
    server turns a multipart form into it), and whether it asks for the maps; refused with what is wrong."""
    if not isinstance(payload, dict):
        raise RequestError(400, f"the request is not a JSON object: {USAGE}")
    unknown = sorted(set(payload) - {"images", "explain"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}: {USAGE} (and optionally explain)")
    entries = payload.get("images")
    if not isinstance(entries, list) or not entries:
        raise RequestError(400, f"no image in the request: {USAGE}")
    if len(entries) > limits.max_images_per_request:
        raise RequestError(
            413,
            f"{len(entries)} images in one request, more than "
            f"serve.max_images_per_request={limits.max_images_per_request}",
        )
    explain = payload.get("explain", False)
    if explain not in (True, False, "true", "false"):
        raise RequestError(400, f"explain={explain!r}: true or false")
    uploads = [upload_of(entry, i) for i, entry in enumerate(entries)]
    for upload in uploads:
        check_image(upload, limits.max_image_pixels)
    return uploads, explain in (True, "true")


def upload_of(entry: Any, index: int) -> Upload:
    """One entry of the JSON images list, its base64 decoded."""
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), str):
        raise RequestError(400, f'images[{index}] has no "data": give each image as {{"name": ..., "data": <base64>}}')
    try:
        content = base64.b64decode(entry["data"], validate=True)
    except ValueError as error:
        raise RequestError(400, f"images[{index}]: its data is not base64 ({error})") from None
    name = str(entry.get("name") or f"image_{index}")
    return Upload(Path(name).name or f"image_{index}", content)


def check_image(upload: Upload, max_pixels: int) -> None:
    """Refuse what is not an image, or one with more pixels than the server decodes, from its header alone."""
    try:
        with Image.open(io.BytesIO(upload.content)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise RequestError(415, f"{upload.name} is not an image Pillow can read") from None
    except OSError as error:
        raise RequestError(415, f"{upload.name} is not an image Pillow can read ({error})") from None
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"{upload.name}: {error}") from None
    if width * height > max_pixels:
        raise RequestError(
            413, f"{upload.name} has {width}x{height} pixels, more than serve.max_image_pixels={max_pixels}"
        )


class ServedModel:
    """A trained model (checkpoint or ensemble folder) with its decision policy, ready to answer images."""

    def __init__(
        self, path: str, evaluation: EvaluationSettings, explain: ExplainSettings, serve: ServeSettings
    ) -> None:
        self.model: TrainedModel = load_model(path)
        if self.model.metadata_encoding:
            raise SkinclfError(
                f"ckpt={path} takes metadata beside each image: the server takes images alone; use "
                "python -m skinclf.predict with a table"
            )
        self.evaluation = evaluation
        # the largest batch of requests at the most images each, in one forward pass; the images are decoded here
        batch_size = serve.max_batch_size * serve.max_images_per_request
        self.inference = Inference(inference_trainer(serve.accelerator, progress_bar=False), batch_size, num_workers=0)
        self.policy: DecisionPolicy = self.model.decision_policy(evaluation, self.inference)[0]
        self.explain = explain

    def card(self) -> dict[str, Any]:
        """The model's facts (GET /model): who it is, how it sees an image, what its score means, how it decides."""
        return {
            "skinclf_version": skinclf.__version__,
            "source": str(self.model.path),
            "run": self.model.identity,
            "input": preprocessing_description(self.model.preprocessing),
            "output": {"meaning": self.model.score_meaning, "diagnoses": self.model.diagnoses},
            "test_time_views": self.evaluation.tta,
            "decision_policy": self.policy.record(),
            "operating_points": self.policy.operating_points,
        }

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
            table = pd.DataFrame({"path": paths})
            images = Images(root, table, "the images of the requests")
            predicted = with_decisions(
                self.model.predict(images, self.inference, self.evaluation.tta, True), self.policy
            )
            maps = self.maps(root, table, explain, requests)
            answers: list[list[dict[str, Any]] | RequestError] = []
            row = 0
            for uploads in requests:
                try:
                    answers.append(
                        [answer_of(u, predicted.iloc[row + i], maps[row + i]) for i, u in enumerate(uploads)]
                    )
                except RequestError as refused:  # this request alone: the others of the batch are answered
                    answers.append(refused)
                row += len(uploads)
        return answers

    def maps(
        self, root: Path, table: pd.DataFrame, explain: list[bool], requests: list[list[Upload]]
    ) -> list[str | None]:
        """The overlay of where the model looked (a base64 JPEG) for the images of requests that ask for it."""
        wanted = [asked for asked, uploads in zip(explain, requests, strict=True) for _ in uploads]
        maps: list[str | None] = [None] * len(table)
        if not any(wanted):
            return maps
        explainer = Explainer(self.model.classifiers, self.explain, self.evaluation.tta)
        rows = [i for i, asked in enumerate(wanted) if asked]
        written = explain_images(
            explainer, root, table.iloc[rows].reset_index(drop=True), self.model.preprocessing, root
        )
        for i, heatmap in zip(rows, written, strict=True):
            if heatmap:
                overlay = (root / heatmap).with_suffix(".jpg")
                maps[i] = base64.b64encode(overlay.read_bytes()).decode()
        return maps


def answer_of(upload: Upload, row: pd.Series, overlay: str | None) -> dict[str, Any]:
    """One image's answer, as predict's row for it says: the probability, the decision at each operating point, the
    out-of-distribution score and referral where the model has them, and the overlay when asked for."""
    if row["error"]:
        raise RequestError(422, f"{upload.name} could not be read: {row['error']}")
    answer: dict[str, Any] = {"name": upload.name, "probability": float(row["probability"])}
    per_diagnosis = {
        c.removeprefix(PROBABILITY_PREFIX): float(row[c]) for c in row.index if c.startswith(PROBABILITY_PREFIX)
    }
    if per_diagnosis:
        answer["diagnosis_probabilities"] = per_diagnosis
    answer["decisions"] = {c.removeprefix("decision_"): row[c] for c in row.index if c.startswith("decision_")}
    if "ood_score" in row:
        answer["ood_score"] = float(row["ood_score"])
    if "refer" in row:
        answer["refer"] = row["refer"] == "true"
    if overlay is not None:
        answer["overlay_jpeg"] = overlay
    return answer
