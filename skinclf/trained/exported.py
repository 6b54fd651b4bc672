"""What an export writes beyond a classifier's own probability model, as torch modules: its temperature, and an
ensemble's combination of its members."""

from __future__ import annotations

import torch
from torch import nn

from skinclf.metrics.calibration import EPSILON, TINY


class TemperatureScaled(nn.Module):
    """An exported probability model (see LesionClassifier.probability_model) at a temperature: its probability of
    malignancy, and for a diagnosis head each diagnosis' probability, as temperature scaling gives them."""

    def __init__(self, model: nn.Module, temperature: float, malignant_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("malignant_mask", malignant_mask if malignant_mask is not None else torch.empty(0))

    def forward(
        self, images: torch.Tensor, metadata: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(images) if metadata is None else self.model(images, metadata)
        if isinstance(outputs, tuple):  # a diagnosis head: (malignancy, the diagnoses' probabilities)
            diagnoses = (outputs[1].clamp_min(TINY).log() / self.temperature).softmax(1)
            return diagnoses[:, self.malignant_mask].sum(1), diagnoses
        p = outputs.clamp(EPSILON, 1 - EPSILON)
        return torch.sigmoid((p.log() - (-p).log1p()) / self.temperature)


class EnsembleProbabilities(nn.Module):
    """The combination as one exported model (skinclf.export), of members' probability models (see
    ``LesionClassifier.probability_model``): the mean of their
    probabilities of malignancy, or, given each member's validation probabilities as ``references``
    (combine rule rank), the mean of each probability's mid-rank percentile among its member's references."""

    def __init__(self, members: list[nn.Module], references: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.ranked = references is not None
        for i, reference in enumerate(references or []):
            self.register_buffer(f"reference_{i}", reference.float().flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = []
        for i, member in enumerate(self.members):
            probability = member(images)
            if isinstance(probability, tuple):  # task=diagnosis: (malignancy, diagnoses)
                probability = probability[0]
            if self.ranked:
                probability = self.percentile(getattr(self, f"reference_{i}"), probability)
            scores.append(probability)
        return torch.stack(scores).mean(0)

    @staticmethod
    def percentile(reference: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The share of the reference below each score, ties counted half (as :func:`percentiles`)."""
        below = (reference < scores[:, None]).sum(1)
        at_most = (reference <= scores[:, None]).sum(1)
        return (below + at_most).float() / (2 * reference.numel())
