"""The training order and augmentation seeds depend on (seed, epoch) only."""

from __future__ import annotations

import numpy as np

from skinclf.data.sampler import EpochSampler


def test_each_epoch_is_a_seeded_permutation_with_seeds_per_image() -> None:
    sampler = EpochSampler(10, seed=3)
    first = list(sampler)
    assert sorted(index for index, _ in first) == list(range(10))
    assert len({seed for _, seed in first}) == 10
    assert list(EpochSampler(10, seed=3)) == first  # the same for the same seed and epoch
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(i for i, _ in second) == list(range(10))
    sampler.set_epoch(0)
    assert list(sampler) == first  # as after a resume at epoch 0


def test_ranks_share_one_permutation_without_overlap() -> None:
    whole = list(EpochSampler(10, seed=5))
    shards = [list(EpochSampler(10, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded to equal length
    interleaved = [shards[position % 3][position // 3] for position in range(12)]
    assert interleaved[:10] == whole and interleaved[10:] == whole[:2]


def test_balanced_sampling_draws_both_classes_alike_and_repeats_exactly() -> None:
    labels = np.r_[np.ones(50), np.zeros(950)].astype(int)  # 5 % malignant
    weights = 1.0 / np.bincount(labels)[labels]
    sampler = EpochSampler(1000, seed=1, weights=weights)
    drawn = labels[[index for index, _ in sampler]]
    assert len(drawn) == 1000 and 0.45 < drawn.mean() < 0.55  # about half malignant
    assert list(EpochSampler(1000, seed=1, weights=weights)) == list(sampler)  # (seed, epoch) alone
    shards = [list(EpochSampler(1000, seed=1, rank=r, world_size=2, weights=weights)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(sampler)  # the ranks split the same draw
