"""The legacy IoU tracker, kept as the frame-by-frame baseline of ``benchmarks/autolabel_quality.py``.

It links boxes of the same class across frames by overlap, and numbers the tracks.

The association is greedy by IoU over the boxes of consecutive sampled frames (after Bochinski et al.,
"High-Speed Tracking-by-Detection Without Using Image Information", 2017). It needs no image, runs at
tens of thousands of frames per second, and gives the stable ids a reviewer corrects one track at a time.
Autolabel uses the two-pass tracker in :mod:`dataengine.autolabel.tracks`; this one and
:func:`label_frames` (detections -> tracked annotation frames with it) live here, outside the product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dataengine.autolabel.labelling import MIN_BOX_SIDE_PX, FrameSize, clean_detections
from dataengine.clips import frame_name
from dataengine.formats import Box, Frame
from dataengine.vision.boxes import greedy_match, same_label_iou
from dataengine.vision.inference import Detections


class IoUTracker:
    """Greedy per-class IoU association with a tolerance of ``max_gap`` missed frames.

    Call :meth:`update` once per frame, in order; it returns the track id of each box. Ids start at 1
    and are never reused. A box continues the track whose last box of the same label overlaps it most
    (IoU >= ``iou_threshold``), provided that track was seen within the last ``max_gap + 1`` frames;
    every other box starts a new track. Gaps count calls to :meth:`update`, i.e. sampled frames.
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_gap: int = 2) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self.reset()

    def reset(self) -> None:
        """Forget every track; the next id is 1 again."""
        self._step = -1
        self._next_id = 1
        self._ids = np.zeros((0,), dtype=np.int64)
        self._boxes = np.zeros((0, 4), dtype=np.float64)
        self._labels = np.zeros((0,), dtype=np.int64)
        self._last_seen = np.zeros((0,), dtype=np.int64)

    @property
    def n_tracks(self) -> int:
        """How many track ids were handed out since the last reset."""
        return self._next_id - 1

    def update(self, boxes_xyxy: NDArray[np.floating], labels: NDArray[np.integer]) -> NDArray[np.int64]:
        """The track id of each box of the next frame (same order as ``boxes_xyxy``)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        box_labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if box_labels.shape[0] != boxes.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes but {box_labels.shape[0]} labels")
        self._step += 1
        self._drop_lost_tracks()
        track_ids = np.zeros((boxes.shape[0],), dtype=np.int64)
        if boxes.shape[0] and self._ids.size:
            iou = same_label_iou(self._boxes, self._labels, boxes, box_labels)
            rows, cols = greedy_match(iou, iou_threshold=self.iou_threshold)
            track_ids[cols] = self._ids[rows]
            self._boxes[rows] = boxes[cols]
            self._last_seen[rows] = self._step
        self._start_tracks(track_ids, boxes, box_labels)
        return track_ids

    def _drop_lost_tracks(self) -> None:
        alive = self._step - self._last_seen - 1 <= self.max_gap
        if not alive.all():
            self._ids, self._boxes = self._ids[alive], self._boxes[alive]
            self._labels, self._last_seen = self._labels[alive], self._last_seen[alive]

    def _start_tracks(
        self, track_ids: NDArray[np.int64], boxes: NDArray[np.float64], labels: NDArray[np.int64]
    ) -> None:
        new = np.flatnonzero(track_ids == 0)
        if new.size == 0:
            return
        ids = np.arange(self._next_id, self._next_id + new.size, dtype=np.int64)
        self._next_id += int(new.size)
        track_ids[new] = ids
        self._ids = np.concatenate([self._ids, ids])
        self._boxes = np.concatenate([self._boxes, boxes[new]])
        self._labels = np.concatenate([self._labels, labels[new]])
        self._last_seen = np.concatenate([self._last_seen, np.full(new.size, self._step, dtype=np.int64)])


def track_frames(
    frames: Sequence[tuple[NDArray[np.floating], NDArray[np.integer]]],
    *,
    iou_threshold: float = 0.3,
    max_gap: int = 2,
) -> list[NDArray[np.int64]]:
    """Track ids for the ``(boxes_xyxy, labels)`` of each frame, with a fresh :class:`IoUTracker`."""
    tracker = IoUTracker(iou_threshold=iou_threshold, max_gap=max_gap)
    return [tracker.update(boxes, labels) for boxes, labels in frames]


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
