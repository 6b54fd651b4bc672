"""The set-level shift test: a set drawn like the reference rarely raises the alarm, a shifted one does."""

from __future__ import annotations

import numpy as np
import torch

from skinclf.metrics.shift import LEVEL, mmd_test


def features(rng: np.random.Generator, count: int, shift: float = 0.0) -> torch.Tensor:
    drawn = rng.normal(size=(count, 16))
    drawn[:, :4] += shift  # the shifted set differs in a quarter of its features
    return torch.tensor(drawn)


def test_the_alarm_fires_at_its_level_on_alike_sets_and_on_nearly_every_shifted_one() -> None:
    rng = np.random.default_rng(0)
    reference = features(rng, 200)
    alike = [mmd_test(reference, features(rng, 100), permutations=200, seed=i).alarm for i in range(100)]
    shifted = [mmd_test(reference, features(rng, 100, 0.6), permutations=200, seed=i).alarm for i in range(20)]
    assert np.mean(alike) <= 3 * LEVEL  # 0.01 expected: 0 to 3 of 100 alike sets
    assert np.mean(shifted) >= 0.95


def test_the_p_value_is_the_share_of_relabellings_at_least_as_far_apart() -> None:
    rng = np.random.default_rng(1)
    reference, drawn = features(rng, 50), features(rng, 30, 3.0)
    test = mmd_test(reference, drawn, permutations=199)
    assert test.p_value == 0.005 and test.alarm  # no relabelling reaches the observed distance: 1 / (199 + 1)
    assert (test.images, test.reference_images) == (30, 50) and test.statistic > 0
    assert mmd_test(reference, drawn, permutations=199).p_value == test.p_value  # seeded
