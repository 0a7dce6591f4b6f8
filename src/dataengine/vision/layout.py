"""Where a model's files live in the object store, and the checkpoint format tag every backend writes."""

from __future__ import annotations

CHECKPOINT_FORMAT = "dataengine.checkpoint/1"


def model_prefix(model_id: str) -> str:
    """The folder key of a model."""
    return f"models/{model_id}"


def checkpoint_key(model_id: str) -> str:
    """The key of a model's weights."""
    return f"models/{model_id}/model.pt"
