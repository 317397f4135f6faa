"""``BatchLoader``: batches of an in-memory ``TensorPair`` by slicing a permutation.

No per-sample ``DataLoader`` path: one permutation per epoch, one index per batch.

Order. The permutation of epoch ``e`` is ``torch.randperm(N)`` drawn from a CPU generator seeded
with ``SeedSequence([seed, e])`` (numpy), so it depends on nothing but (seed, epoch): a resumed run
that restores ``state_dict()`` (epoch, position) sees the same batches it would have seen.

Distributed sharding. ``batch_size`` is the per-rank batch ``b``; the global batch is
``G = b * world_size``. Global batch ``k`` of an epoch is ``perm[k*G : (k+1)*G]`` (the same
permutation on every rank) and rank ``r`` gets its contiguous slice ``[r*b : (r+1)*b]``. So the
rank batches, concatenated in rank order, are exactly the batch a single process with
``batch_size=G`` gets, and a DDP run with ``world_size`` ranks x ``b`` (gradients averaged over
ranks) takes the same steps as one process with ``G``. The last, partial global batch of ``m < G``
samples (when ``drop_last`` is False) is cut to ``m - m % world_size`` samples so that each rank
gets an equal share of ``m // world_size`` (the few left over are not seen that epoch; with one
process nothing is cut); if that leaves nothing, the batch is dropped. Every rank has the same
number of batches, so DDP never waits on a rank that has run out.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from cnnlab.data.bundle import TensorPair
from cnnlab.errors import CheckpointError, ConfigError

__all__ = ["BatchLoader", "epoch_permutation"]


def epoch_permutation(n: int, *, seed: int, epoch: int) -> Tensor:
    """The order of epoch ``epoch``: a function of (seed, epoch) only."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch)]).generate_state(1, np.uint64)[0]
    gen = torch.Generator().manual_seed(int(state) & 0x7FFFFFFFFFFFFFFF)
    return torch.randperm(n, generator=gen)


class BatchLoader:
    """Yield ``(x, y)`` batches of ``pair`` for this rank; resumable from ``state_dict()``.

    Iterating continues the current epoch from its position (0 at the start); when an epoch is
    exhausted the loader moves on to the next epoch, so a loop that never calls ``set_epoch`` still
    gets a new order each epoch. ``position`` counts the batches already handed out in the epoch.
    """

    def __init__(
        self,
        pair: TensorPair,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
        self.pair = pair
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0
        self._order: Tensor | None = None  # the permutation of self.epoch, cached
        self._order_epoch = -1

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def num_samples(self) -> int:
        return len(self.pair)

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        n, g, w = self.num_samples, self.global_batch_size, self.world_size
        full, rest = divmod(n, g)
        return full + (1 if rest // w > 0 and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` at its first batch; setting the current epoch again keeps the position
        (so a loop that calls ``set_epoch(e)`` after ``load_state_dict`` resumes mid-epoch)."""
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def _epoch_order(self) -> Tensor:
        if self._order_epoch != self.epoch:
            n = self.num_samples
            order = epoch_permutation(n, seed=self.seed, epoch=self.epoch) if self.shuffle else torch.arange(n)
            self._order, self._order_epoch = order.to(self.pair.x.device), self.epoch
        return self._order

    def batch_indices(self, k: int) -> Tensor:
        """The sample indices this rank gets in batch ``k`` of the current epoch."""
        order, g, w = self._epoch_order(), self.global_batch_size, self.world_size
        chunk = order[k * g : (k + 1) * g]
        share = len(chunk) // w  # b for a full batch, m // world_size for the last one
        return chunk[self.rank * share : (self.rank + 1) * share]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        steps = len(self)
        if self.position >= steps:  # the last epoch was consumed without asking for more: move on
            self.epoch, self.position = self.epoch + 1, 0
        while self.position < steps:
            idx = self.batch_indices(self.position)
            self.position += 1
            yield self.pair.x[idx], self.pair.y[idx]
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        """Plain ints and bools (loads with ``torch.load(weights_only=True)``)."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; it must come from a loader over the same data and batching."""
        for key in ("seed", "shuffle", "batch_size", "world_size", "num_samples"):
            if key in state and state[key] != getattr(self, key):
                raise CheckpointError(
                    f"loader state has {key}={state[key]!r} but this loader has {getattr(self, key)!r}; "
                    "resume with the same data, batch size and seed"
                )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= len(self):
            raise CheckpointError(f"loader state has an invalid position: epoch {epoch}, batch {position}")
        self.epoch, self.position = epoch, position
