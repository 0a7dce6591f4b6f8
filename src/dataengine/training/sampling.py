"""The training sampler: a new pseudo-random permutation of the samples every epoch, computed lazily.

``torch.randperm(n).tolist()``, what ``RandomSampler`` and ``DistributedSampler`` do each epoch, holds
``n`` Python ints in the process that feeds the DataLoader: about 36 bytes per sample, 600 MB at 17M
frames, and half a second before the first batch. :class:`ShuffledShardSampler` instead computes the
permutation position by position from a keyed bijection of ``[0, n)`` (a Feistel network over the next
power of two, with cycle walking back into range), a chunk of positions at a time: memory is one chunk,
whatever ``n``, and the first batch needs only the first chunk.

Every epoch is a full permutation of ``range(n)``, a function of ``(seed, epoch)`` only (so a resumed
run sees the same order), sharded as ``DistributedSampler`` shards: the permutation is padded to a
multiple of the world size by repeating its first positions (so every rank takes the same number of
steps, which DDP needs), and rank ``r`` takes positions ``r, r + world_size, ...``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from torch.utils.data import Sampler

#: Feistel rounds: 4 make a pseudo-random permutation from pseudo-random round functions (Luby-Rackoff);
#: the extra rounds cost little and leave no visible structure in small domains.
ROUNDS = 8
#: Positions computed at once: about 1 MB of temporaries, and under a millisecond before the first batch.
CHUNK = 1 << 16
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(values: NDArray[np.uint64], key: np.uint64) -> NDArray[np.uint64]:
    """splitmix64's finaliser of ``values ^ key``: a keyed, well-mixed 64-bit hash (a new array)."""
    z = values ^ key
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


class LazyPermutation:
    """A keyed bijection of ``range(n)``: ``self(positions)`` gives the permuted values of ``positions``.

    An unbalanced Feistel network over ``[0, 2**k)``, the smallest power of two that holds ``n`` (so under
    ``2n``: cycle walking takes under 2 steps per value on average). A round XORs the high bits with a
    keyed hash of the low bits, then rotates the two parts: each round is a bijection, whatever the widths.
    """

    def __init__(self, n: int, *, seed: int, epoch: int) -> None:
        """The permutation of ``range(n)`` for ``(seed, epoch)``."""
        if n < 0:
            raise ValueError(f"a permutation of {n} items")
        self.n = n
        bits = max(1, (n - 1).bit_length())
        self._widths = (bits - bits // 2, bits // 2)  # (high, low) bits before the first round
        self._keys = [
            np.uint64(int.from_bytes(hashlib.sha256(f"{seed}:{epoch}:{r}".encode()).digest()[:8], "little"))
            for r in range(ROUNDS)
        ]

    def _feistel(self, x: NDArray[np.uint64]) -> NDArray[np.uint64]:
        high_bits, low_bits = self._widths
        for key in self._keys:
            low = x & np.uint64((1 << low_bits) - 1)
            high = x >> np.uint64(low_bits)
            high ^= _mix(low, key) & np.uint64((1 << high_bits) - 1)
            x = (low << np.uint64(high_bits)) | high
            high_bits, low_bits = low_bits, high_bits
        return x

    def __call__(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        """The values at ``positions`` (each in ``[0, n)``)."""
        values = self._feistel(positions.astype(np.uint64))
        outside = np.flatnonzero(values >= np.uint64(self.n))
        # Cycle walking: a value outside [0, n) is mapped again until it lands inside. The walk from a
        # point of [0, n) meets [0, n) again before it returns to itself, so this stays a bijection.
        while outside.size:
            values[outside] = self._feistel(values[outside])
            outside = outside[values[outside] >= np.uint64(self.n)]
        return values.astype(np.int64)


class ShuffledShardSampler(Sampler[int]):
    """This rank's share of a fresh permutation of ``range(n)`` every epoch (call :meth:`set_epoch`).

    Deterministic in ``(seed, epoch)``; with ``world_size`` ranks, each gets ``ceil(n / world_size)``
    samples and together they take every sample once, plus the first ``pad`` positions of the
    permutation a second time (``pad = world_size * ceil(n / world_size) - n``), as ``DistributedSampler``.
    """

    def __init__(self, n: int, *, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        """Shuffle ``n`` samples for rank ``rank`` of ``world_size``."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of a world of {world_size}")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation from the next iteration on."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size) if self.n else 0

    def indices(self, start: int = 0, stop: int | None = None) -> NDArray[np.int64]:
        """This rank's samples ``start:stop`` of the current epoch, as an array."""
        stop = len(self) if stop is None else min(stop, len(self))
        if stop <= start:
            return np.zeros(0, dtype=np.int64)
        positions = self.rank + self.world_size * np.arange(start, stop, dtype=np.int64)
        # Padding positions (>= n) repeat the permutation's first ones, as DistributedSampler's do.
        return LazyPermutation(self.n, seed=self.seed, epoch=self.epoch)(positions % self.n)

    def __iter__(self) -> Iterator[int]:
        for start in range(0, len(self), CHUNK):
            yield from self.indices(start, start + CHUNK).tolist()
