"""Per-epoch training state in object storage, so a crashed job resumes where it stopped.

Rank 0 writes ``models/{model_id}/checkpoints/last.pt`` after every epoch: the weights, the optimizer,
the learning-rate schedule, the AMP scaler, the epoch statistics so far and the run's configuration. The
model id is a hash of the data and the arguments, so the rerun of a crashed ``train`` finds that file
and continues at the next epoch instead of starting again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dataengine.errors import ModelError
from dataengine.storage import ObjectStore
from dataengine.vision import model_prefix

RESUME_FORMAT = "dataengine.train-state/1"


def resume_key(model_id: str) -> str:
    """The key of a model's newest per-epoch training state."""
    return f"{model_prefix(model_id)}/checkpoints/last.pt"


@dataclass
class TrainState:
    """What a job needs to continue: the next epoch, the finished epochs' statistics and their time."""

    next_epoch: int = 0
    epochs: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


@dataclass(frozen=True)
class Trainables:
    """What an epoch changes and a resumed job restores: the model, optimizer, scheduler and AMP scaler."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None


def save_state(
    store: ObjectStore, model_id: str, *, config: dict[str, Any], parts: Trainables, state: TrainState
) -> None:
    """Write the state after an epoch (one atomic object write, replacing the previous epoch's)."""
    payload = {
        "format": RESUME_FORMAT,
        "config": config,
        "next_epoch": state.next_epoch,
        "epochs": state.epochs,
        "train_seconds": state.train_seconds,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    store.write_bytes(resume_key(model_id), buffer.getvalue())


def load_state(store: ObjectStore, model_id: str, *, config: dict[str, Any], parts: Trainables) -> TrainState:
    """Restore the newest state of ``model_id`` into the given objects; a fresh state when there is none.

    A state saved with another configuration is refused: resuming it would mix two recipes.
    """
    key = resume_key(model_id)
    if not store.exists(key):
        return TrainState()
    try:
        # Tensors, numbers, strings and containers only: a pickle that would run code is refused, so
        # whoever can write the bucket cannot run code on the training workers.
        payload = torch.load(io.BytesIO(store.read_bytes(key)), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{store.uri(key)}: unreadable training state ({exc}); delete it to train from the start"
        ) from exc
    if payload.get("format") != RESUME_FORMAT or payload.get("config") != config:
        raise ModelError(
            f"{store.uri(key)} was saved by a run with another configuration; delete it to start again"
        )
    parts.model.load_state_dict(payload["model"])
    parts.optimizer.load_state_dict(payload["optimizer"])
    parts.scheduler.load_state_dict(payload["scheduler"])
    if parts.scaler is not None and payload.get("scaler"):
        parts.scaler.load_state_dict(payload["scaler"])
    return TrainState(
        next_epoch=int(payload["next_epoch"]),
        epochs=list(payload["epochs"]),
        train_seconds=float(payload["train_seconds"]),
    )
