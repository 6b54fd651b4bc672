"""The training order and augmentation seeds depend on (seed, epoch) only."""

from __future__ import annotations

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
