"""The training order and the augmentation seeds, drawn from (seed, epoch) alone."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler


@dataclass(eq=False)
class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles a dataset each epoch and gives every image drawn its own augmentation seed.

    Yields (index, seed) pairs; :class:`~skinclf.data.dataset.LesionDataset` seeds its pipeline
    with the seed of each image. Both depend only on (``seed``, epoch), so an epoch sees the same
    images and augmentations whatever the number of loader workers, and again when a run resumes
    from a checkpoint (Lightning calls :meth:`set_epoch`). Under DDP each of ``world_size``
    processes takes every ``world_size``-th pair of the same permutation, padded to equal length.

    With ``weights`` (one per image) an epoch instead draws ``size`` images with replacement, each
    with a probability proportional to its weight: class-balanced sampling, as deterministic.
    """

    size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    weights: np.ndarray | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is None:
            order = rng.permutation(self.size)
        else:
            probabilities = np.asarray(self.weights, dtype=float) / np.sum(self.weights)
            order = rng.choice(self.size, size=self.size, replace=True, p=probabilities)
        seeds = rng.integers(0, 2**63 - 1, size=self.size)
        total = len(self) * self.world_size
        order, seeds = np.resize(order, total), np.resize(seeds, total)  # pad by repeating the start
        for position in range(self.rank, total, self.world_size):
            yield int(order[position]), int(seeds[position])
