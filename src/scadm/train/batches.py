"""Processes and per-sample randomness: the accelerator, each sample's generator, and the
sampler that gives every process its slice of each global batch.

Determinism. Every random draw that shapes a sample's loss (its timestep, noise, style
dropout, flip) comes from a generator keyed by (seed, micro-step, position in the global
batch). So a run resumed from a checkpoint sees exactly the draws of an uninterrupted run,
and N processes that each take a slice of the global batch see exactly the draws of one
process taking all of it.
"""

from __future__ import annotations

from typing import Iterator

import torch


def make_accelerator(mixed_precision: str = "auto"):
    """An accelerate Accelerator; works alone, under `torchrun` and under `accelerate launch` (gloo on CPU)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, not {mixed_precision!r}")
    # In the gather path the cross-attention q/k projections get no gradient (as in the released code).
    kwargs = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mixed_precision, kwargs_handlers=[kwargs], cpu=not torch.cuda.is_available())


def sample_generator(seed: int, micro_step: int, position: int) -> torch.Generator:
    """The generator for one sample of one micro-step (see the module docstring)."""
    key = (int(seed) * 1_000_003 + int(micro_step)) * 65_537 + int(position)
    return torch.Generator().manual_seed(key % (2**63 - 1))


class GlobalBatchSampler:
    """Yields this process's slice of each global batch, epoch after epoch, from any micro-step.

    Epoch e visits a permutation drawn from (seed, e); a global batch is ``local_batch x
    world_size`` consecutive indices (an incomplete tail is dropped); process r gets slice r.
    """

    def __init__(self, n: int, local_batch: int, rank: int, world_size: int, seed: int, start: int = 0) -> None:
        self.n, self.local_batch, self.rank, self.world_size, self.seed = n, local_batch, rank, world_size, seed
        self.global_batch = local_batch * world_size
        self.per_epoch = n // self.global_batch
        if self.per_epoch == 0:
            raise ValueError(
                f"the training split has {n} samples, fewer than one global batch of {self.global_batch}; "
                "lower training.batch_size or add data"
            )
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            epoch, pos = divmod(k, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            lo = pos * self.global_batch + self.rank * self.local_batch
            yield perm[lo:lo + self.local_batch].tolist()
            k += 1

    def __len__(self) -> int:  # effectively infinite; DataLoader only needs it for len()
        return 2**62
