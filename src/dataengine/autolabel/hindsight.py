"""Hindsight: what offline labelling can do because the whole clip, future frames included, is known.

On finished tracks: drop short ones (flicker), give each its majority class, fill short gaps by linear
interpolation, smooth the coordinates along the track, and rescore every box with the track's confidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from dataengine.vision.tracks import Track


@dataclass(frozen=True, slots=True)
class HindsightParams:
    """``gap_frames`` (K), ``min_track_frames`` (M) and the Gaussian ``smoothing`` sigma (sampled frames)."""

    gap_frames: int = 4
    min_track_frames: int = 3
    smoothing: float = 1.0

    def __post_init__(self) -> None:
        if self.gap_frames < 0 or self.min_track_frames < 1 or self.smoothing < 0:
            raise ValueError(
                "need gap_frames >= 0, min_track_frames >= 1 and smoothing >= 0, got "
                f"{self.gap_frames}, {self.min_track_frames}, {self.smoothing}"
            )


@dataclass(frozen=True, slots=True)
class TrackBox:
    """A box of a finished track at one sampled-frame position."""

    position: int
    track: int
    label: int
    xyxy: tuple[float, float, float, float]
    score: float
    interpolated: bool


def majority_label(track: Track) -> int:
    """The class with the highest total score over the track's observations (ties: the lower index)."""
    totals: dict[int, float] = defaultdict(float)
    for label, score in zip(track.labels, track.scores, strict=True):
        totals[label] += score
    return min(totals, key=lambda label: (-totals[label], label))


def fill_gaps(
    positions: Sequence[int], boxes: NDArray[np.float64], times: NDArray[np.float64], max_gap: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
    """The track's positions and boxes with gaps of at most ``max_gap`` positions filled.

    Filled boxes lie on the straight line between the boxes either side, at the frames' ``times``
    (the clip frame index of each position), so uneven sampling interpolates correctly. Returns the
    positions, boxes and a mask of the filled ones.
    """
    out_positions: list[int] = [positions[0]]
    out_boxes: list[NDArray[np.float64]] = [boxes[0]]
    filled: list[bool] = [False]
    for i in range(1, len(positions)):
        start, end = positions[i - 1], positions[i]
        if 0 < end - start - 1 <= max_gap:
            t0, t1 = times[start], times[end]
            for missing in range(start + 1, end):
                weight = (times[missing] - t0) / (t1 - t0)
                out_positions.append(missing)
                out_boxes.append((1.0 - weight) * boxes[i - 1] + weight * boxes[i])
                filled.append(True)
        out_positions.append(end)
        out_boxes.append(boxes[i])
        filled.append(False)
    return np.asarray(out_positions, dtype=np.int64), np.stack(out_boxes), np.asarray(filled, dtype=np.bool_)


def smooth(positions: NDArray[np.int64], boxes: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """Boxes smoothed with a Gaussian of ``sigma`` positions along each run of consecutive positions."""
    if sigma <= 0 or len(positions) < 3:
        return boxes
    out = boxes.copy()
    breaks = np.flatnonzero(np.diff(positions) > 1) + 1
    for run in np.split(np.arange(len(positions)), breaks):
        if run.size >= 3:
            out[run] = gaussian_filter1d(boxes[run], sigma=sigma, axis=0, mode="nearest")
    return out


def apply_hindsight(
    tracks: Sequence[Track], times: Sequence[float], params: HindsightParams
) -> list[TrackBox]:
    """The boxes of the tracks that survive, after gap filling, smoothing, majority class and rescoring.

    ``times[p]`` is the clip frame index of sampled position ``p``. Surviving tracks are renumbered from
    1 in order of their first frame. A track's confidence is the mean score of its observations, or
    the confidence recovery gave it (:mod:`dataengine.autolabel.recovery`).
    """
    frame_times = np.asarray(times, dtype=np.float64)
    result: list[TrackBox] = []
    kept = [
        t for t in sorted(tracks, key=lambda t: (t.positions[0], t.id)) if len(t) >= params.min_track_frames
    ]
    for number, track in enumerate(kept, start=1):
        label = majority_label(track)
        confidence = float(np.mean(track.scores)) if track.confidence is None else track.confidence
        positions, boxes, filled = fill_gaps(
            track.positions, np.stack(track.boxes), frame_times, params.gap_frames
        )
        boxes = smooth(positions, boxes, params.smoothing)
        for position, box, interpolated in zip(positions.tolist(), boxes, filled.tolist(), strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            result.append(TrackBox(position, number, label, (x1, y1, x2, y2), confidence, interpolated))
    return result
