"""Distributed mode for the torchrun entry point: set up from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

Without those variables the entry point runs as a single process, so it can be debugged with plain
``python -m dataengine.training.ddp``. CUDA uses NCCL with one GPU per local rank; the CPU uses gloo.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dataengine.errors import TrainingError
from dataengine.vision import pick_device

#: Long enough for the slowest rank to index its data and build the model, short enough to notice a hang.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=10)
#: The launcher hands the object store's options (credentials) to the ranks in this variable, never argv.
#: It lives here, not in ``ddp``: importing ``ddp`` from the package would make ``python -m`` run it twice.
STORAGE_OPTIONS_ENV = "DATAENGINE_STORAGE_OPTIONS"


@dataclass(frozen=True, slots=True)
class DistributedInfo:
    """Where this process sits in the job: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def distributed(self) -> bool:
        """Whether a process group was set up."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and saves."""
        return self.rank == 0


def init_distributed(device_preference: str = "auto") -> DistributedInfo:
    """Join the process group torchrun describes, or run alone when it describes none."""
    device = pick_device(device_preference)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedInfo(rank=0, world_size=1, local_rank=0, device=device, backend=None)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible; "
                "lower --nproc to the number of GPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=PROCESS_GROUP_TIMEOUT)
    return DistributedInfo(
        rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend
    )


def reduce_mean(values: dict[str, torch.Tensor], info: DistributedInfo) -> dict[str, float]:
    """The mean of each value over all ranks (the same numbers on every rank)."""
    names = sorted(values)
    stacked = torch.stack([values[name].detach().float() for name in names])
    if info.distributed and info.world_size > 1:
        dist.all_reduce(stacked)
        stacked /= info.world_size
    return {name: float(v) for name, v in zip(names, stacked.cpu().tolist(), strict=True)}


def barrier(info: DistributedInfo) -> None:
    """Wait for every rank."""
    if info.distributed:
        dist.barrier()


def shutdown(info: DistributedInfo) -> None:
    """Leave the process group."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over a model's parameters in name order: equal on every rank of a job that trained one model.

    Buffers are left out: BatchNorm running statistics follow each rank's own last batches under DDP,
    and the checkpoint keeps rank 0's.
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_ranks_agree(digest: str, info: DistributedInfo) -> list[str]:
    """Every rank's weights digest, in rank order; raises when the ranks hold different weights."""
    digests = [digest]
    if info.distributed and info.world_size > 1:
        gathered: list[object] = [None] * info.world_size
        dist.all_gather_object(gathered, digest)
        digests = [str(d) for d in gathered]
    if len(set(digests)) > 1:
        raise TrainingError(
            f"the ranks ended with different weights (sha256 per rank: {digests}): DDP lost sync"
        )
    return digests
