"""Where a model's files live in the object store, the checkpoint format tag, and how every backend
writes them (torch loads only when a checkpoint is written)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from dataengine.storage import ObjectStore

CHECKPOINT_FORMAT = "dataengine.checkpoint/1"


def model_prefix(model_id: str) -> str:
    """The folder key of a model."""
    return f"models/{model_id}"


def checkpoint_key(model_id: str) -> str:
    """The key of a model's weights."""
    return f"models/{model_id}/model.pt"


def write_checkpoint(store: ObjectStore, model_id: str, config: dict[str, Any], model: nn.Module) -> str:
    """Write ``model.pt`` (the config and the weights) and ``config.json``; returns the weights' URI.

    The config travels inside the weights file too, so a lone model.pt is self-describing.
    """
    import torch

    buffer = io.BytesIO()
    torch.save({"config": config, "state_dict": model.state_dict()}, buffer)
    store.write_bytes(checkpoint_key(model_id), buffer.getvalue())
    store.write_json(f"{model_prefix(model_id)}/config.json", config)
    return store.uri(checkpoint_key(model_id))
