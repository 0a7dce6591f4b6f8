"""Hindsight recovery: a track that its class's strongest member sees on most frames keeps its boxes.

WBF discounts a box by the weight of the members that missed it, so where the other members lose an
object for a few frames, its fused score dips, or the fused box disappears under ``low_score``. The
tracker's third pass (:func:`dataengine.autolabel.tracks.track_detections`, ``extra``) already carries a
track through such frames on the strongest member's own boxes. Here each track is then scored: when the
strongest member saw it on at least ``share`` of its frames, the track's confidence is at least that
member's mean score over the track (0 where it did not see it), so the dips cannot drop the track.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dataengine.vision.boxes import pairwise_iou
from dataengine.vision.inference import Detections
from dataengine.vision.tracks import Track


@dataclass(frozen=True, slots=True)
class RecoveryParams:
    """``share``: the part of a track's frames the strongest member must see it on; ``match_iou``: the
    overlap that makes its box the track's."""

    share: float = 0.5
    match_iou: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0 or not 0.0 < self.match_iou <= 1.0:
            raise ValueError(f"share and match_iou must lie in (0, 1], got {self.share}, {self.match_iou}")


def strong_support(track: Track, strong: Sequence[Detections], match_iou: float) -> list[float]:
    """For each observation of ``track``, the best score of a strongest-member box of the same class that
    overlaps it by ``match_iou`` on that frame (0 when there is none)."""
    support = []
    for position, box, label in zip(track.positions, track.boxes, track.labels, strict=True):
        frame = strong[position]
        mine = frame.labels == label
        if not mine.any():
            support.append(0.0)
            continue
        iou = pairwise_iou(box[None, :], frame.boxes_xyxy[mine].astype(np.float64))[0]
        scores = frame.scores[mine][iou >= match_iou]
        support.append(float(scores.max()) if scores.size else 0.0)
    return support


def recover_tracks(tracks: list[Track], strong: Sequence[Detections], params: RecoveryParams) -> list[Track]:
    """The tracks, each one that the strongest member sees on at least ``share`` of its frames with its
    confidence raised to that member's mean support when that is higher than its mean fused score."""
    for track in tracks:
        support = strong_support(track, strong, params.match_iou)
        seen = sum(1 for s in support if s > 0) / max(len(support), 1)
        if support and seen >= params.share:
            track.confidence = max(float(np.mean(track.scores)), float(np.mean(support)))
    return tracks
