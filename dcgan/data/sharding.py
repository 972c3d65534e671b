"""A sharded, seeded, resumable batch order over a split held in memory.

Each epoch's order is a permutation derived from (seed, epoch) alone, so a resumed run only needs
the epoch and the position inside it to continue exactly.
"""

from __future__ import annotations

import torch

from dcgan.errors import UserError
from dcgan.rng import derive_seed


class ShardedBatches:
    """This rank's batches of one epoch, as index rows into the in-memory split.

    Step s of an epoch takes the global batch perm[s*W*B : (s+1)*W*B] and rank r its r-th slice of B,
    so shards are disjoint, every rank runs the same number of steps (the last W*B-1 or fewer samples
    of each permutation are left out, different ones each epoch), and the order is fixed by the seed.
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int, rank: int, seed: int):
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise UserError(
                f"{num_samples} training images cannot fill one global batch of {global_batch} "
                f"(train.batch_size={batch_size} x {world_size} processes); lower train.batch_size"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.steps_per_epoch = num_samples // global_batch

    def indices(self, epoch: int) -> torch.Tensor:
        """(steps_per_epoch, batch_size) int64 indices for this rank in `epoch`."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "data", epoch))
        perm = torch.randperm(self.num_samples, generator=generator)
        used = perm[: self.steps_per_epoch * self.batch_size * self.world_size]
        return used.view(self.steps_per_epoch, self.world_size, self.batch_size)[:, self.rank]
