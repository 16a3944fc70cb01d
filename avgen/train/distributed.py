"""Data-parallel training on torch.distributed (`torchrun`), exactly equal to one process.

Every rank draws the whole global batch (examples, partner-motion noise, flow times and
noise) from the same seeded streams and keeps its own contiguous slice, so the ranks'
slices together are what a single process trains on at that step. Each rank averages its
loss over the *global* real-frame count divided by the world size; DistributedDataParallel
averages gradients over ranks, so the update is the single-process one up to float
rounding. Gloo on CPU, NCCL on GPU (one GPU per rank: cuda:LOCAL_RANK).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from avgen.errors import InputError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: rank r of world_size (local_rank picks its GPU).
    `init_method`: how ranks meet (torchrun's env:// by default, or e.g. file:///tmp/x)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    init_method: str = "env://"

    @classmethod
    def from_env(cls) -> Ranks:
        """From torchrun's WORLD_SIZE, RANK, LOCAL_RANK (one process when unset)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise InputError(f"WORLD_SIZE/RANK/LOCAL_RANK must be integers ({exc})") from None
        return cls(rank, world, local)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This rank's contiguous slice of a global batch (equal shares)."""
        if not 0 <= self.rank < self.world_size:
            raise InputError(f"rank {self.rank} is not in a world of {self.world_size}")
        if batch_size % self.world_size:
            raise InputError(f"--batch-size {batch_size} does not split over "
                             f"{self.world_size} processes; use a multiple of {self.world_size}")
        size = batch_size // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def device(self, requested: str | None) -> str:
        """The rank's device: cuda:LOCAL_RANK for a bare 'cuda' when distributed."""
        device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.distributed and device == "cuda":
            device = f"cuda:{self.local_rank}"
        return device


def start(ranks: Ranks, device: str) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA); True if this call started it."""
    import torch.distributed as dist

    if not ranks.distributed or dist.is_initialized():
        return False
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            init_method=ranks.init_method, rank=ranks.rank,
                            world_size=ranks.world_size)
    return True


def stop(started: bool) -> None:
    import torch.distributed as dist

    if started and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        torch.distributed.barrier()


class _Loss(torch.nn.Module):
    """`model.loss` as a forward, which is what DistributedDataParallel hooks into."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model.loss(*args, **kwargs)


def loss_function(model: torch.nn.Module, ranks: Ranks, device: str):
    """A callable with `model.loss`'s signature whose backward averages gradients over
    ranks (DistributedDataParallel), or `model.loss` itself in one process."""
    if not ranks.distributed:
        return model.loss
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(_Loss(model), device_ids=ids)


def mean_over_ranks(values: list[float], ranks: Ranks, device: str) -> list[float]:
    """Average of per-rank numbers (the logged loss of the whole global batch)."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return (tensor / ranks.world_size).tolist()
