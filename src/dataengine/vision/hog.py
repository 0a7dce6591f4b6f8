"""OpenCV's built-in HOG people detector: a ``person`` pre-labeller that needs no weights file at all.

Dalal and Triggs' linear SVM ships inside OpenCV, so it works on day one on any machine. It finds
upright, whole people about 128 px tall or more (frames are enlarged by ``upscale`` for smaller ones)
and nothing else: it is a bootstrap for the ``person`` class, not a detector to keep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from dataengine.errors import ModelError
from dataengine.vision.inference import Detections, predict_in_batches

#: The one label this detector emits.
HOG_LABELS = ["person"]
#: The SVM margin that maps to a score of 0.5; the score is logistic(2 * (margin - this)).
HOG_MARGIN_AT_HALF = 0.5


def hog_score(margin: NDArray[np.float64]) -> NDArray[np.float32]:
    """A score in (0, 1) from the SVM's margin: 0.5 at :data:`HOG_MARGIN_AT_HALF`, rising with it."""
    return (1.0 / (1.0 + np.exp(-2.0 * (margin - HOG_MARGIN_AT_HALF)))).astype(np.float32)


class HogPeopleDetector:
    """OpenCV's default people detector behind the ``FrameDetector`` interface (label 0 is a person)."""

    def __init__(self, *, model_id: str, upscale: float = 1.0, win_stride: int = 8) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise ModelError(
                "the HOG people detector needs OpenCV: pip install opencv-python-headless"
            ) from exc
        if not hasattr(cv2, "HOGDescriptor"):
            raise ModelError(f"this OpenCV ({cv2.__version__}) has no HOGDescriptor; install OpenCV 4")
        if upscale <= 0 or win_stride < 1:
            raise ModelError(f"model {model_id}: upscale must be > 0 and win_stride >= 1")
        self._cv2: Any = cv2
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        self.classes = list(HOG_LABELS)
        self.model_id = model_id
        self.device = torch.device("cpu")
        self.upscale = float(upscale)
        self.win_stride = int(win_stride)

    def __repr__(self) -> str:
        return f"HogPeopleDetector({self.model_id!r}, upscale={self.upscale})"

    def predict_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """People in each RGB frame; boxes in frame pixels."""
        return [self._detect(frame) for frame in frames]

    def _detect(self, rgb: NDArray[np.uint8]) -> Detections:
        cv2 = self._cv2
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        if not math.isclose(self.upscale, 1.0):
            grey = cv2.resize(grey, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        stride = (self.win_stride, self.win_stride)
        rects, margins = self._hog.detectMultiScale(grey, winStride=stride, padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return Detections.empty()
        xywh = np.asarray(rects, dtype=np.float32).reshape(-1, 4) / self.upscale
        height, width = rgb.shape[:2]
        xyxy = np.stack(
            [
                xywh[:, 0].clip(0, width),
                xywh[:, 1].clip(0, height),
                (xywh[:, 0] + xywh[:, 2]).clip(0, width),
                (xywh[:, 1] + xywh[:, 3]).clip(0, height),
            ],
            axis=1,
        ).astype(np.float32)
        scores = hog_score(np.asarray(margins, dtype=np.float64).reshape(-1))
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return Detections(xyxy[keep], scores[keep], np.zeros(int(keep.sum()), dtype=np.int64))

    def predict(
        self, frames: Sequence[NDArray[np.uint8]], *, batch_size: int = 8, score_threshold: float = 0.0
    ) -> list[Detections]:
        """People in each RGB frame, in order."""
        return predict_in_batches(self, frames, batch_size=batch_size, score_threshold=score_threshold)
