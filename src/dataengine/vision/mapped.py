"""A detector whose labels are translated to our classes by a :class:`~.class_map.LabelMap`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from dataengine.vision.class_map import LabelMap
from dataengine.vision.inference import Detections, FrameDetector, predict_in_batches


def remap(detections: Detections, lookup: NDArray[np.int64]) -> Detections:
    """``detections`` with labels looked up in ``lookup``; labels outside it or mapped to -1 are dropped."""
    labels = detections.labels
    inside = (labels >= 0) & (labels < lookup.shape[0])
    mapped = np.full(labels.shape, -1, dtype=np.int64)
    mapped[inside] = lookup[labels[inside]]
    keep = mapped >= 0
    return Detections(detections.boxes_xyxy[keep], detections.scores[keep], mapped[keep])


class MappedDetector:
    """Any :class:`FrameDetector` seen through a label map: it speaks our classes, not its own."""

    def __init__(self, inner: FrameDetector, label_map: LabelMap, *, model_id: str) -> None:
        self.inner = inner
        self.label_map = label_map
        self.classes = list(label_map.classes)
        self.model_id = model_id
        self.device: torch.device = inner.device
        self._lookup = label_map.array()

    def __repr__(self) -> str:
        return f"MappedDetector({self.model_id!r}, {self.inner!r}, map={self.label_map.mapped})"

    def predict_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """The inner detector's detections, in our classes; unmapped labels are dropped."""
        return [remap(d, self._lookup) for d in self.inner.predict_batch(frames)]

    def predict(
        self, frames: Sequence[NDArray[np.uint8]], *, batch_size: int = 8, score_threshold: float = 0.0
    ) -> list[Detections]:
        """Detections for each RGB frame, in order; labels index :attr:`classes`."""
        return predict_in_batches(self, frames, batch_size=batch_size, score_threshold=score_threshold)
