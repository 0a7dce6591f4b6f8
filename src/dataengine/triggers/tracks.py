"""Link one detector's per-frame detections into tracks, so triggers can reason about objects over time.

Linking is class-agnostic (a track whose class flips is still one track) and tolerates gaps of up to
``max_gap`` frames (an object that vanishes and returns is still one track). Boxes are linked on the IoU
of the boxes grown ``link_scale`` times around their centres, so a box whose size or position jumps
stays in its track and the jump itself can be measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from dataengine.vision.boxes import greedy_match, pairwise_iou
from dataengine.vision.inference import Detections


@dataclass
class Track:
    """One object over time: per observation its frame position ``t``, box, score and label."""

    track_id: int
    t: list[int] = field(default_factory=list)
    boxes_xyxy: list[NDArray[np.float32]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def add(self, t: int, box_xyxy: NDArray[np.float32], score: float, label: int) -> None:
        """Append an observation at frame position ``t``."""
        self.t.append(t)
        self.boxes_xyxy.append(box_xyxy)
        self.scores.append(score)
        self.labels.append(label)

    def confident(self, threshold: float) -> list[int]:
        """Positions in this track's observations whose score is at least ``threshold``."""
        return [i for i, score in enumerate(self.scores) if score >= threshold]

    def __len__(self) -> int:
        return len(self.t)


def consecutive_iou(boxes_xyxy: NDArray[np.floating]) -> NDArray[np.float64]:
    """IoU of each box with the next one in a (N, 4) array: N - 1 values."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    a, b = boxes[:-1], boxes[1:]
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0.0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    union = area[:-1] + area[1:] - inter
    out: NDArray[np.float64] = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def grow_boxes(boxes_xyxy: NDArray[np.floating], scale: float) -> NDArray[np.float64]:
    """Boxes scaled by ``scale`` about their centres."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2.0)
    return np.concatenate([centre - half, centre + half], axis=1)


def link_tracks(
    detections: Sequence[Detections],
    *,
    max_gap: int = 3,
    link_iou: float = 0.2,
    link_scale: float = 2.0,
) -> list[Track]:
    """Tracks over ``detections`` (one entry per frame, in order), ordered by first appearance.

    A detection joins the track whose last box, grown ``link_scale`` times, overlaps its own grown box by
    at least ``link_iou`` (greedy, highest IoU first), among tracks last seen at most ``max_gap`` + 1
    frames ago; otherwise it starts a new track.
    """
    tracks: list[Track] = []
    for t, frame in enumerate(detections):
        live = [tr for tr in tracks if t - tr.t[-1] <= max_gap + 1]
        unmatched = set(range(len(frame)))
        if live and len(frame):
            last = np.stack([tr.boxes_xyxy[-1] for tr in live])
            iou = pairwise_iou(grow_boxes(last, link_scale), grow_boxes(frame.boxes_xyxy, link_scale))
            rows, cols = greedy_match(iou, iou_threshold=link_iou)
            for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
                live[row].add(t, frame.boxes_xyxy[col], float(frame.scores[col]), int(frame.labels[col]))
                unmatched.discard(col)
        for col in sorted(unmatched):
            track = Track(track_id=len(tracks))
            track.add(t, frame.boxes_xyxy[col], float(frame.scores[col]), int(frame.labels[col]))
            tracks.append(track)
    return tracks
