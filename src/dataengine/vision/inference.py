"""Batched inference with a detector on RGB frames, on CUDA when there is one and the CPU otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from dataengine.errors import ModelError


def pick_device(preference: str = "auto") -> torch.device:
    """``cuda`` when asked for or available under ``auto``, else ``cpu``."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {preference!r} was asked for, but CUDA is not available here")
    return torch.device(preference)


@dataclass(frozen=True, slots=True)
class Detections:
    """The detections of one frame: ``boxes_xyxy`` in absolute pixels, ``labels`` index ``classes``."""

    boxes_xyxy: NDArray[np.float32]
    scores: NDArray[np.float32]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            boxes_xyxy=np.zeros((0, 4), dtype=np.float32),
            scores=np.zeros((0,), dtype=np.float32),
            labels=np.zeros((0,), dtype=np.int64),
        )

    def above(self, score_threshold: float) -> Detections:
        """Only the detections scoring at least ``score_threshold``."""
        keep = self.scores >= score_threshold
        return Detections(self.boxes_xyxy[keep], self.scores[keep], self.labels[keep])


def to_tensor(rgb: NDArray[np.uint8], device: torch.device) -> torch.Tensor:
    """An RGB ``uint8`` (H, W, 3) array as a float (3, H, W) tensor in [0, 1]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ModelError(f"expected an RGB frame of shape (H, W, 3), got {rgb.shape}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float().div_(255.0)


class Detector:
    """A trained detector with its class names, ready for inference."""

    def __init__(
        self, model: nn.Module, *, classes: Sequence[str], model_id: str, device: torch.device
    ) -> None:
        self.model = model.to(device).eval()
        self.classes = list(classes)
        self.model_id = model_id
        self.device = device

    def __repr__(self) -> str:
        return f"Detector({self.model_id!r}, classes={self.classes}, device={self.device})"

    @torch.inference_mode()
    def predict(
        self,
        frames: Sequence[NDArray[np.uint8]],
        *,
        batch_size: int = 8,
        score_threshold: float = 0.0,
    ) -> list[Detections]:
        """Detections for each RGB frame, in order; labels index :attr:`classes`."""
        results: list[Detections] = []
        for start in range(0, len(frames), batch_size):
            batch = [to_tensor(frame, self.device) for frame in frames[start : start + batch_size]]
            for output in self.model(batch):
                # torchvision's label 0 is the background, so class i is label i + 1.
                detections = Detections(
                    boxes_xyxy=output["boxes"].float().cpu().numpy().astype(np.float32),
                    scores=output["scores"].float().cpu().numpy().astype(np.float32),
                    labels=(output["labels"].cpu().numpy() - 1).astype(np.int64),
                )
                results.append(detections.above(score_threshold))
        return results
