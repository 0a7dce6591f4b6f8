"""Turning a detector's raw output on a clip into annotation frames (pure: no model, no storage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dataengine.formats import Frame
from dataengine.vision.boxes import clip_boxes_xyxy
from dataengine.vision.inference import Detections

#: Boxes narrower or lower than this after clipping to the frame are dropped.
MIN_BOX_SIDE_PX = 1.0


@dataclass(frozen=True, slots=True)
class FrameSize:
    """A sampled frame's clip frame index and image size in pixels."""

    index: int
    width: int
    height: int


def clean_detections(
    detections: Detections, *, width: int, height: int, n_classes: int, min_side_px: float = MIN_BOX_SIDE_PX
) -> Detections:
    """Boxes clipped to the frame; degenerate boxes, non-finite scores and unknown labels dropped."""
    boxes, keep = clip_boxes_xyxy(detections.boxes_xyxy, width=width, height=height, min_side_px=min_side_px)
    keep &= np.isfinite(detections.scores) & (detections.labels >= 0) & (detections.labels < n_classes)
    return Detections(
        boxes_xyxy=boxes[keep].astype(np.float32),
        scores=np.clip(detections.scores[keep], 0.0, 1.0).astype(np.float32),
        labels=detections.labels[keep].astype(np.int64),
    )


def count_tracks(frames: Sequence[Frame]) -> int:
    """How many distinct track ids the frames' boxes carry."""
    return len({box.track for frame in frames for box in frame.boxes if box.track is not None})
