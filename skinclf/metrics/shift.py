"""Whether a whole set of images comes from what the model knows: a two-sample test of their features against a
reference sample the model keeps (its own validation images': held out from training, as a set from the same
clinic would be).

The statistic is the squared maximum mean discrepancy (Gretton et al., JMLR 2012) between the L2-normalised
features of the two samples under a Gaussian kernel whose bandwidth is the median squared distance within the
reference (the median heuristic); its p-value is the share of random relabellings of the pooled images whose
statistic reaches the observed one (a permutation test, exact in level for any kernel). alibi-detect's MMDDrift is
this test, but its release needs numpy < 2 (this project's pins hold numpy 2), so the few lines are here, vectorised:
each relabelling is a vector of weights w (1/n on one side, -1/m on the other) and its statistic is w' K w.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Relabellings of the permutation test: its smallest p-value is 1 / (PERMUTATIONS + 1).
PERMUTATIONS = 500
#: The p-value below which a set is called unlike the reference.
LEVEL = 0.01


@dataclass(frozen=True)
class ShiftTest:
    """The squared MMD of a set against the reference, its permutation p-value, and the sizes of both samples."""

    statistic: float
    p_value: float
    images: int
    reference_images: int

    @property
    def alarm(self) -> bool:
        return self.p_value < LEVEL


def mmd_test(
    reference: torch.Tensor, drawn: torch.Tensor, permutations: int = PERMUTATIONS, seed: int = 0
) -> ShiftTest:
    """The two-sample MMD permutation test of the drawn features (m, D) against the reference (n, D)."""
    reference = torch.nn.functional.normalize(reference.double(), dim=1)
    drawn = torch.nn.functional.normalize(drawn.double(), dim=1)
    pooled = torch.cat([reference, drawn])
    n, m = len(reference), len(drawn)
    squared = torch.cdist(pooled, pooled).pow(2)
    bandwidth = squared[:n, :n].median().clamp_min(1e-12)
    kernel = torch.exp(-squared / bandwidth)
    generator = torch.Generator().manual_seed(seed)
    orders = torch.stack(
        [torch.arange(n + m), *(torch.randperm(n + m, generator=generator) for _ in range(permutations))]
    )
    by_position = torch.where(torch.arange(n + m) < n, 1.0 / n, -1.0 / m).double().expand(len(orders), -1)
    side = torch.empty_like(by_position)
    side.scatter_(1, orders, by_position)  # the image at position i of an order takes position i's weight
    statistics = ((side @ kernel) * side).sum(1)
    observed, permuted = statistics[0], statistics[1:]
    p_value = (1 + int((permuted >= observed).sum())) / (1 + permutations)
    return ShiftTest(float(observed), p_value, m, n)
