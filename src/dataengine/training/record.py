"""What one training job produced: the trained module (in memory) and its record (``training.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn


@dataclass(frozen=True, slots=True)
class TrainingRecord:
    """The facts of a training job that ``models/{id}/training.json`` keeps (with the job's ``args``)."""

    model_id: str
    dataset_id: str
    manifest: str
    world_size: int
    #: The process group backend (None when the job ran as one process).
    backend: str | None
    device: str
    amp: bool
    n_train_frames: int
    n_train_clips: int
    train_seconds: float
    resumed_from_epoch: int
    #: One entry per epoch: ``epoch``, ``loss``, ``seconds`` and the engine's other statistics.
    epochs: list[dict[str, Any]] = field(default_factory=list)
    #: The sha256 of the weights every rank agreed on (set after the ranks compared them).
    weights_sha256: str | None = None

    def with_digest(self, digest: str) -> TrainingRecord:
        """The same record naming the weights' digest."""
        return replace(self, weights_sha256=digest)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``weights_sha256`` only once it is known."""
        doc = asdict(self)
        if doc["weights_sha256"] is None:
            del doc["weights_sha256"]
        return doc


@dataclass(frozen=True, slots=True)
class FitResult:
    """The result of :func:`dataengine.training.ddp.fit`: the trained model (unwrapped) and its record."""

    model: nn.Module
    record: TrainingRecord
