"""Batched inference with a detector on RGB frames: on CUDA with AMP when there is one, else float32 CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class FrameDetector(Protocol):
    """What autolabel and triggers need of any backend's detector (torchvision, mmdet, ...)."""

    model_id: str
    classes: list[str]
    device: torch.device

    def predict_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detections (no score threshold) of one batch of RGB frames, in order, in one forward pass."""
        ...

    def predict(
        self, frames: Sequence[NDArray[np.uint8]], *, batch_size: int = 8, score_threshold: float = 0.0
    ) -> list[Detections]:
        """Detections of each RGB frame, in order, in batches of ``batch_size``."""
        ...


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Mixed precision (float16) on CUDA; plain float32 everywhere else, where AMP gains nothing."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def predict_in_batches(
    detector: FrameDetector,
    frames: Sequence[NDArray[np.uint8]],
    *,
    batch_size: int,
    score_threshold: float,
) -> list[Detections]:
    """:meth:`FrameDetector.predict_batch` over ``frames`` in slices of ``batch_size``, thresholded."""
    if batch_size < 1:
        raise ModelError(f"batch_size must be >= 1, got {batch_size}")
    results: list[Detections] = []
    for start in range(0, len(frames), batch_size):
        batch = detector.predict_batch(frames[start : start + batch_size])
        results.extend(detections.above(score_threshold) for detections in batch)
    return results


class Detector:
    """A trained torchvision detector with its class names, ready for inference."""

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
    def predict_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detections of one batch of RGB frames in one forward pass; labels index :attr:`classes`."""
        if not frames:
            return []
        batch = [to_tensor(frame, self.device) for frame in frames]
        with autocast(self.device):
            outputs = self.model(batch)
        # torchvision's label 0 is the background, so class i is label i + 1.
        return [
            Detections(
                boxes_xyxy=output["boxes"].float().cpu().numpy().astype(np.float32),
                scores=output["scores"].float().cpu().numpy().astype(np.float32),
                labels=(output["labels"].cpu().numpy() - 1).astype(np.int64),
            )
            for output in outputs
        ]

    def predict(
        self,
        frames: Sequence[NDArray[np.uint8]],
        *,
        batch_size: int = 8,
        score_threshold: float = 0.0,
    ) -> list[Detections]:
        """Detections for each RGB frame, in order; labels index :attr:`classes`."""
        return predict_in_batches(self, frames, batch_size=batch_size, score_threshold=score_threshold)
