"""The lazily computed training permutation: a full permutation per epoch, deterministic, sharded."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dataengine.training import sampling
from dataengine.training.sampling import LazyPermutation, ShuffledShardSampler

#: Sizes around the chunk and the powers of two (the Feistel domain), and small ones.
SIZES = [0, 1, 2, 3, 5, 7, 64, 1000, 4097, sampling.CHUNK - 1, sampling.CHUNK + 3, 3 * sampling.CHUNK + 17]


@pytest.mark.parametrize("n", SIZES)
def test_every_epoch_is_a_full_permutation(n: int) -> None:
    sampler = ShuffledShardSampler(n, seed=11)
    for epoch in (0, 1, 5):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == n
        assert sorted(order) == list(range(n))


@pytest.mark.parametrize("n", [5, 1000, sampling.CHUNK + 3])
def test_the_order_is_a_function_of_seed_and_epoch(n: int) -> None:
    def order(seed: int, epoch: int) -> list[int]:
        sampler = ShuffledShardSampler(n, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(3, 2) == order(3, 2)  # a fresh sampler (a resumed job) gives the same order
    if n >= 1000:  # small n may collide by chance; large ones must differ
        assert order(3, 2) != order(3, 3)
        assert order(3, 2) != order(4, 2)
        assert order(3, 2) != list(range(n))


@pytest.mark.parametrize("n", [1, 2, 3, 10, 999, 1000, 1001, sampling.CHUNK + 3, 2 * sampling.CHUNK + 1])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
def test_ranks_share_out_every_sample_like_distributed_sampler(n: int, world_size: int) -> None:
    """Every sample once across the ranks; the padding (equal steps for all) repeats the first positions."""
    shards = []
    for rank in range(world_size):
        sampler = ShuffledShardSampler(n, seed=5, rank=rank, world_size=world_size)
        sampler.set_epoch(4)
        shards.append(list(sampler))
    alone = ShuffledShardSampler(n, seed=5)
    alone.set_epoch(4)
    permutation = list(alone)

    per_rank = -(-n // world_size)
    assert all(len(shard) == per_rank for shard in shards)
    padded = permutation + [permutation[i % n] for i in range(per_rank * world_size - n)]
    interleaved = [shards[p % world_size][p // world_size] for p in range(per_rank * world_size)]
    assert interleaved == padded  # rank r takes positions r, r + world_size, ... of the padded permutation
    counts = Counter(i for shard in shards for i in shard)
    assert set(counts) == set(range(n))
    extra = per_rank * world_size - n
    assert sum(counts.values()) == n + extra
    if n % world_size == 0:
        assert set(counts.values()) == {1}  # exactly once each


def test_chunks_and_slices_agree_with_the_whole_epoch() -> None:
    n = 3 * sampling.CHUNK + 17
    sampler = ShuffledShardSampler(n, seed=1, rank=1, world_size=3)
    sampler.set_epoch(2)
    whole = list(sampler)

    assert sampler.indices(10, 20).tolist() == whole[10:20]
    assert sampler.indices(sampling.CHUNK - 2, sampling.CHUNK + 2).tolist() == whole[sampling.CHUNK - 2 :][:4]
    assert sampler.indices(len(sampler) - 1, len(sampler) + 5).tolist() == whole[-1:]


def test_the_permutation_looks_random() -> None:
    """No visible structure: no rank correlation with the position, few neighbours kept, values spread."""
    n = 100_000
    values = LazyPermutation(n, seed=0, epoch=0)(np.arange(n, dtype=np.int64))
    positions = np.arange(n)

    assert abs(np.corrcoef(positions, values)[0, 1]) < 0.02
    assert int((np.diff(values) == 1).sum()) < 20  # consecutive samples rarely stay consecutive
    # Each tenth of the positions takes about a tenth of every tenth of the values.
    table = np.histogram2d(positions, values, bins=10)[0]
    assert table.min() > 0.85 * n / 100
    assert table.max() < 1.15 * n / 100
    # Two epochs are unrelated: about one fixed point expected between two random permutations.
    other = LazyPermutation(n, seed=0, epoch=1)(np.arange(n, dtype=np.int64))
    assert int((other == values).sum()) < 10


def test_a_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="rank 2 of a world of 2"):
        ShuffledShardSampler(10, rank=2, world_size=2)
