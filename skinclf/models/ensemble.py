"""Several classifiers as one exported model: the combination skinclf.ensemble evaluated."""

from __future__ import annotations

import torch
from torch import nn


class EnsembleProbabilities(nn.Module):
    """Members' probability models (see ``LesionClassifier.probability_model``) as one: the mean of their
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
        """The share of the reference below each score, ties counted half (as evaluation.ensemble.percentiles)."""
        below = (reference < scores[:, None]).sum(1)
        at_most = (reference <= scores[:, None]).sum(1)
        return (below + at_most).float() / (2 * reference.numel())
