"""The training and inference loops: one epoch of SGD steps, and batched prediction for evaluation."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch
from torch import nn

from dataengine.errors import TrainingError
from dataengine.training.dataset import Target, to_float_image
from dataengine.training.distributed import DistributedInfo, reduce_mean

Batch = tuple[list[torch.Tensor], list[Target]]
Log = Callable[[str], None]


def _to_device(batch: Batch, device: torch.device) -> Batch:
    images, targets = batch
    return (
        [to_float_image(image.to(device, non_blocking=True)) for image in images],
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
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns the mean of each loss over the epoch (all ranks), and
    ``loss_first``/``loss_last``, the mean total loss of its first and last quarter of steps.

    A non-finite loss on any rank stops every rank with :class:`TrainingError`: the reduced loss is the
    same number everywhere, so the ranks agree on stopping and nobody hangs in the next collective.
    With a ``scaler`` (CUDA), the forward pass runs under float16 autocast (AMP).
    """
    model.train()
    sums: dict[str, float] = defaultdict(float)
    totals: list[float] = []
    steps, started = 0, time.perf_counter()
    for step, batch in enumerate(loader):
        images, targets = _to_device(batch, info.device)
        with torch.autocast(device_type=info.device.type, enabled=scaler is not None):
            loss_dict: dict[str, torch.Tensor] = model(images, targets)
            loss = torch.stack([v.float() for v in loss_dict.values()]).sum()
        reduced = reduce_mean(loss_dict, info)
        total = sum(reduced.values())
        if not math.isfinite(total):
            raise TrainingError(
                f"loss is {total} at epoch {epoch} step {step} ({reduced}); training stopped. "
                "Lower train_lr or check the labels of this dataset"
            )
        _step(model, optimizer, loss, max_grad_norm=max_grad_norm, scaler=scaler)
        scheduler.step()
        for name, value in reduced.items():
            sums[name] += value
        sums["loss"] += total
        totals.append(total)
        steps += 1
        if info.is_main and print_every > 0 and step % print_every == 0:
            log(f"epoch {epoch} step {step} loss {total:.4f} lr {optimizer.param_groups[0]['lr']:.5f}")
    means = {name: value / max(steps, 1) for name, value in sums.items()}
    means["seconds"] = time.perf_counter() - started
    # The mean loss of the epoch's first and last quarter of steps: whether it went down within the epoch.
    quarter = max(1, len(totals) // 4)
    means["loss_first"] = sum(totals[:quarter]) / quarter if totals else math.nan
    means["loss_last"] = sum(totals[-quarter:]) / quarter if totals else math.nan
    return means


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    *,
    max_grad_norm: float,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """One optimizer step, with gradient clipping; through the AMP scaler when there is one."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        torch.autograd.backward(loss)
    else:
        torch.autograd.backward(scaler.scale(loss))
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable[Batch], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """The model's raw outputs (``boxes``, ``scores``, ``labels``) for every image, in loader order."""
    model.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    for images, _ in loader:
        for output in model([image.to(device) for image in images]):
            outputs.append({k: v.cpu() for k, v in output.items()})
    return outputs
