"""The training and inference loops: one epoch of SGD steps, and batched prediction for evaluation."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch
from torch import nn

from dataengine.errors import TrainingError
from dataengine.training.dataset import Target
from dataengine.training.distributed import DistributedInfo, reduce_mean

Batch = tuple[list[torch.Tensor], list[Target]]
Log = Callable[[str], None]


def _to_device(batch: Batch, device: torch.device) -> Batch:
    images, targets = batch
    return (
        [image.to(device, non_blocking=True) for image in images],
        [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets],
    )


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: Iterable[Batch],
    *,
    info: DistributedInfo,
    epoch: int,
    max_grad_norm: float,
    log: Log,
    print_every: int = 20,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns the mean of each loss over the epoch (all ranks).

    A non-finite loss on any rank stops every rank with :class:`TrainingError`: the reduced loss is the
    same number everywhere, so the ranks agree on stopping and nobody hangs in the next collective.
    """
    model.train()
    sums: dict[str, float] = defaultdict(float)
    steps, started = 0, time.perf_counter()
    for step, batch in enumerate(loader):
        images, targets = _to_device(batch, info.device)
        loss_dict: dict[str, torch.Tensor] = model(images, targets)
        loss = torch.stack(list(loss_dict.values())).sum()
        reduced = reduce_mean(loss_dict, info)
        total = sum(reduced.values())
        if not math.isfinite(total):
            raise TrainingError(
                f"loss is {total} at epoch {epoch} step {step} ({reduced}); training stopped. "
                "Lower train_lr or check the labels of this dataset"
            )
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        if max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        for name, value in reduced.items():
            sums[name] += value
        sums["loss"] += total
        steps += 1
        if info.is_main and print_every > 0 and step % print_every == 0:
            log(f"epoch {epoch} step {step} loss {total:.4f} lr {optimizer.param_groups[0]['lr']:.5f}")
    means = {name: value / max(steps, 1) for name, value in sums.items()}
    means["seconds"] = time.perf_counter() - started
    return means


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable[Batch], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """The model's raw outputs (``boxes``, ``scores``, ``labels``) for every image, in loader order."""
    model.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    for images, _ in loader:
        for output in model([image.to(device) for image in images]):
            outputs.append({k: v.cpu() for k, v in output.items()})
    return outputs
