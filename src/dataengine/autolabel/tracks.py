"""Offline multi-object tracking: IoU with constant-velocity motion, Hungarian assignment, two passes.

ByteTrack's idea (Zhang et al., 2022): confident boxes are associated first; the leftover tracks then get
a second chance against the low-score boxes, which are often the same objects partly hidden or blurred.
Low-score boxes never start a track. The assignment is optimal per frame
(``scipy.optimize.linear_sum_assignment``) instead of greedy, so two crossing objects keep their ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from dataengine.vision.boxes import pairwise_iou
from dataengine.vision.inference import Detections
from dataengine.vision.tracks import Track

#: Cost of an assignment that is not allowed (IoU under the gate).
_FORBIDDEN = 1e6
#: Added to the cost of giving a box to a track of another class: class flicker may join, but loses ties.
_CLASS_PENALTY = 0.2


@dataclass(frozen=True, slots=True)
class TrackerParams:
    """``high``: per-class score at which a box may start a track; ``low``: the floor of the second pass."""

    high: NDArray[np.float64]
    low: float = 0.1
    match_iou: float = 0.3
    low_match_iou: float = 0.5
    max_gap: int = 4
    #: The score at which an extra box (the strongest member's) may start a track, never below ``high``;
    #: above 1, never.
    extra_start: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.match_iou <= 1.0 or not 0.0 < self.low_match_iou <= 1.0:
            raise ValueError(f"IoU gates must lie in (0, 1], got {self.match_iou}, {self.low_match_iou}")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")


def _assign(
    tracks: Sequence[Track], boxes: NDArray[np.float64], labels: NDArray[np.int64], position: int, gate: float
) -> list[tuple[int, int]]:
    """Optimal (track, box) pairs with IoU of the predicted track box >= ``gate``."""
    if not tracks or boxes.shape[0] == 0:
        return []
    predicted = np.stack([track.predicted(position) for track in tracks])
    iou = pairwise_iou(predicted, boxes)
    track_labels = np.asarray([track.labels[-1] for track in tracks])
    cost = 1.0 - iou + _CLASS_PENALTY * (track_labels[:, None] != labels[None, :])
    cost[iou < gate] = _FORBIDDEN
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _FORBIDDEN]


def track_detections(
    detections: Sequence[Detections],
    params: TrackerParams,
    extra: Sequence[Detections] | None = None,
) -> list[Track]:
    """Every track over the frames' detections (one :class:`Detections` per sampled frame, in order).

    ``extra`` (per frame) are boxes from outside the fused set, the strongest members' own: in a third
    pass they extend the tracks still unmatched, recorded with score 0 since the fused set did not have
    them; those scoring at least ``params.extra_start`` (and their class's ``high``) may also start
    tracks. Track ids are numbered from 1 in order of each track's first frame,
    so they are stable for a clip.
    """
    finished: list[Track] = []
    active: list[Track] = []
    counter = [1]
    for position, frame in enumerate(detections):
        # Tracks missing for more than max_gap frames are over: they can no longer be found.
        finished += [t for t in active if position - t.positions[-1] - 1 > params.max_gap]
        active = [t for t in active if position - t.positions[-1] - 1 <= params.max_gap]
        left = _match_frame(active, frame.above(params.low), position, params, counter)
        if extra is not None:
            _extend(left, active, extra[position], position, params, counter)
    return sorted(finished + active, key=lambda t: t.id)


def _match_frame(
    active: list[Track], frame: Detections, position: int, params: TrackerParams, counter: list[int]
) -> list[Track]:
    """The first two passes on one frame; new tracks join ``active``. Returns the tracks left unmatched."""
    boxes = frame.boxes_xyxy.astype(np.float64).reshape(-1, 4)
    labels = frame.labels.astype(np.int64)
    high = frame.scores >= params.high[labels]
    first = np.flatnonzero(high)
    matched = _assign(active, boxes[first], labels[first], position, params.match_iou)
    used = {row for row, _ in matched}
    for row, col in matched:
        box = first[col]
        active[row].add(position, boxes[box], float(frame.scores[box]), int(labels[box]))
    # The second pass: leftover tracks against the low-score boxes only.
    left = [t for i, t in enumerate(active) if i not in used]
    second = np.flatnonzero(~high)
    taken = set()
    for row, col in _assign(left, boxes[second], labels[second], position, params.low_match_iou):
        box = second[col]
        left[row].add(position, boxes[box], float(frame.scores[box]), int(labels[box]))
        taken.add(row)
    started = set(first[[col for _, col in matched]].tolist())
    for box in first.tolist():
        if box not in started:
            active.append(
                _new_track(counter, position, boxes[box], float(frame.scores[box]), int(labels[box]))
            )
    return [t for i, t in enumerate(left) if i not in taken]


def _extend(
    left: list[Track],
    active: list[Track],
    frame: Detections,
    position: int,
    params: TrackerParams,
    counter: list[int],
) -> None:
    """The third pass: the tracks still unmatched against the extra boxes (score 0 in the track)."""
    boxes = frame.boxes_xyxy.astype(np.float64).reshape(-1, 4)
    labels = frame.labels.astype(np.int64)
    taken = set()
    for row, col in _assign(left, boxes, labels, position, params.low_match_iou):
        left[row].add(position, boxes[col], 0.0, int(labels[col]))
        taken.add(col)
    start = np.maximum(params.high[labels], params.extra_start)
    for col in np.flatnonzero(frame.scores >= start).tolist():
        if col in taken or _overlaps(active, position, boxes[col], int(labels[col]), params.low_match_iou):
            continue
        active.append(_new_track(counter, position, boxes[col], 0.0, int(labels[col])))


def _overlaps(
    tracks: Sequence[Track], position: int, box: NDArray[np.float64], label: int, gate: float
) -> bool:
    """Whether a track of ``label`` already has a box at ``position`` overlapping ``box`` by ``gate``."""
    mine = [t.boxes[-1] for t in tracks if t.positions[-1] == position and t.labels[-1] == label]
    return bool(mine) and bool((pairwise_iou(np.stack(mine), box[None, :]) >= gate).any())


def _new_track(
    counter: list[int], position: int, box: NDArray[np.float64], score: float, label: int
) -> Track:
    track = Track(counter[0])
    counter[0] += 1
    track.add(position, box, score, label)
    return track
