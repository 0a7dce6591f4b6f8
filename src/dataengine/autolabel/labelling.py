"""Turning a detector's raw output on a clip into annotation frames (pure: no model, no storage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dataengine.autolabel.tracking import IoUTracker
from dataengine.clips import frame_name
from dataengine.formats import Box, Frame
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


def _to_boxes(
    detections: Detections, track_ids: NDArray[np.int64], classes: Sequence[str], size: FrameSize
) -> list[Box]:
    boxes = []
    for xyxy, score, label, track in zip(
        detections.boxes_xyxy.tolist(),
        detections.scores.tolist(),
        detections.labels.tolist(),
        track_ids.tolist(),
        strict=True,
    ):
        # Rounding to 1/100 px keeps files small; clipping again keeps the rounded box inside the frame.
        x1, y1, x2, y2 = (round(float(v), 2) for v in xyxy)
        x1, x2 = max(0.0, x1), min(float(size.width), x2)
        y1, y2 = max(0.0, y1), min(float(size.height), y2)
        if x2 - x1 < MIN_BOX_SIDE_PX or y2 - y1 < MIN_BOX_SIDE_PX:
            continue
        boxes.append(
            Box(
                label=classes[label],
                xyxy=(x1, y1, x2, y2),
                track=int(track),
                score=round(float(score), 4),
                origin="detector",
            )
        )
    return boxes


def label_frames(
    detections: Sequence[Detections],
    sizes: Sequence[FrameSize],
    *,
    classes: Sequence[str],
    tracker: IoUTracker,
) -> list[Frame]:
    """One :class:`Frame` per sampled frame, boxes tracked across frames; empty frames keep ``boxes=[]``."""
    if len(detections) != len(sizes):
        raise ValueError(f"{len(detections)} detection sets for {len(sizes)} frames")
    tracker.reset()
    frames = []
    for raw, size in zip(detections, sizes, strict=True):
        cleaned = clean_detections(raw, width=size.width, height=size.height, n_classes=len(classes))
        track_ids = tracker.update(cleaned.boxes_xyxy, cleaned.labels)
        frames.append(
            Frame(
                index=size.index,
                image=frame_name(size.index),
                width=size.width,
                height=size.height,
                boxes=_to_boxes(cleaned, track_ids, classes, size),
            )
        )
    return frames


def count_tracks(frames: Sequence[Frame]) -> int:
    """How many distinct track ids the frames' boxes carry."""
    return len({box.track for frame in frames for box in frame.boxes if box.track is not None})
