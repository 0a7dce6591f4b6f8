"""Link one detector's per-frame detections into tracks, so triggers can reason about objects over time.

Linking is class-agnostic (a track whose class flips is still one track) and tolerates gaps of up to
``max_gap`` frames (an object that vanishes and returns is still one track). Boxes are linked on the IoU
of the boxes grown ``link_scale`` times around their centres, so a box whose size or position jumps
stays in its track and the jump itself can be measured.

:func:`link_track_arrays` does the linking on flat arrays (one row per detection), which is what the
flicker and temporal triggers read; :func:`link_tracks` gives the same tracks as :class:`Track` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from dataengine.vision.inference import Detections

#: Up to this many detections in a clip, linking computes one IoU matrix between all of them.
FULL_MATRIX_LIMIT = 400
#: Up to this many, it then links in plain Python (see :func:`_link_small`).
SMALL_CLIP_LIMIT = 64


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


@dataclass(frozen=True, slots=True)
class TrackArrays:
    """Every track of a clip as flat arrays, one row per observation, sorted by track and then by ``t``.

    ``track`` holds the track id (0..``n_tracks`` - 1, in order of first appearance) and ``t`` the frame
    position; ``scores`` are float64 (the detector's float32 values, widened).
    """

    track: NDArray[np.int64]
    t: NDArray[np.int64]
    boxes_xyxy: NDArray[np.float32]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]
    n_tracks: int

    @classmethod
    def from_tracks(cls, tracks: Sequence[Track]) -> TrackArrays:
        """The arrays of :class:`Track` objects (renumbered 0.. in the order given)."""
        lengths = [len(tr) for tr in tracks]
        boxes = [b for tr in tracks for b in tr.boxes_xyxy]
        return cls(
            track=np.repeat(np.arange(len(tracks), dtype=np.int64), lengths),
            t=np.asarray([p for tr in tracks for p in tr.t], dtype=np.int64),
            boxes_xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            scores=np.asarray([s for tr in tracks for s in tr.scores], dtype=np.float64),
            labels=np.asarray([label for tr in tracks for label in tr.labels], dtype=np.int64),
            n_tracks=len(tracks),
        )

    def to_tracks(self) -> list[Track]:
        """The same tracks as :class:`Track` objects."""
        tracks = [Track(track_id=i) for i in range(self.n_tracks)]
        for row in range(self.track.size):
            tracks[int(self.track[row])].add(
                int(self.t[row]), self.boxes_xyxy[row], float(self.scores[row]), int(self.labels[row])
            )
        return tracks


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


def iou_matrix(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The (len(a), len(b)) IoU of two float64 box arrays; empty or inverted boxes have IoU 0."""
    wh = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])
    np.maximum(wh, 0.0, out=wh)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    out: NDArray[np.float64] = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def greedy_pairs(iou: NDArray[np.float64], threshold: float) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Pairs ``(rows, cols)`` taken greedily by descending IoU (ties: lower row, then lower column), each
    row and column at most once, among pairs with IoU >= ``threshold`` and > 0.

    The same pairs as :func:`dataengine.vision.boxes.greedy_match`, with less overhead on the small
    matrices of one frame.
    """
    rows, cols = np.nonzero((iou >= threshold) & (iou > 0))
    if rows.size <= 1:
        return rows, cols
    row_list, col_list = rows.tolist(), cols.tolist()
    if len(set(row_list)) == len(row_list) and len(set(col_list)) == len(col_list):
        # No box has two candidates (the usual case between frames): every candidate pair is a match.
        return rows, cols
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    keep: list[int] = []
    for k in order.tolist():
        row, col = row_list[k], col_list[k]
        if row not in used_rows and col not in used_cols:
            used_rows.add(row)
            used_cols.add(col)
            keep.append(k)
    return rows[keep], cols[keep]


def link_track_arrays(
    detections: Sequence[Detections],
    *,
    max_gap: int = 3,
    link_iou: float = 0.2,
    link_scale: float = 2.0,
) -> TrackArrays:
    """The tracks of :func:`link_tracks`, as :class:`TrackArrays`.

    The loop runs over frames only: each frame's detections are matched to every live track at once
    (one IoU matrix against the tracks' last grown boxes, kept in an array).
    """
    counts = [len(d) for d in detections]
    total = sum(counts)
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TrackArrays(empty, empty.copy(), np.zeros((0, 4), np.float32), np.zeros(0), empty.copy(), 0)
    boxes = np.concatenate([d.boxes_xyxy for d in detections]).astype(np.float32, copy=False).reshape(-1, 4)
    grown = grow_boxes(boxes, link_scale)
    offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
    times = np.repeat(np.arange(len(detections), dtype=np.int64), counts)
    # One IoU matrix between all grown boxes of the clip replaces one small matrix per frame (the
    # per-call overhead dominates on a few boxes); long clips with many boxes go frame by frame.
    every = iou_matrix(grown, grown) if total <= FULL_MATRIX_LIMIT else None
    if total <= SMALL_CLIP_LIMIT and every is not None:
        owner = _link_small(every.tolist(), offsets, max_gap, link_iou)
        n_tracks = int(owner.max()) + 1
    else:
        owner, n_tracks = _link_frames(grown, every, offsets, max_gap, link_iou)
    # Detections are in frame order, so a stable sort by track keeps each track's observations in order.
    order = np.argsort(owner, kind="stable")
    scores = np.concatenate([d.scores for d in detections]).astype(np.float64)
    labels = np.concatenate([d.labels for d in detections]).astype(np.int64)
    return TrackArrays(owner[order], times[order], boxes[order], scores[order], labels[order], n_tracks)


def _link_small(
    every: list[list[float]], offsets: list[int], max_gap: int, link_iou: float
) -> NDArray[np.int64]:
    """The owner track of each detection, in plain Python: on a clip of a few dozen boxes, list
    operations cost less than the dozen numpy calls per frame of :func:`_link_frames`. The same
    matching: greedy by descending IoU, ties to the older track, then to the earlier detection."""
    owner = [0] * offsets[-1]
    last_det: list[int] = []
    last_t: list[int] = []
    for t in range(len(offsets) - 1):
        lo, hi = offsets[t], offsets[t + 1]
        live = [k for k in range(len(last_t)) if last_t[k] >= t - max_gap - 1]
        pairs = sorted(
            (-iou, row, col)
            for row, track in enumerate(live)
            for col, iou in enumerate(every[last_det[track]][lo:hi])
            if iou >= link_iou and iou > 0
        )
        taken_rows: set[int] = set()
        assigned = [-1] * (hi - lo)
        for _, row, col in pairs:
            if row not in taken_rows and assigned[col] < 0:
                taken_rows.add(row)
                assigned[col] = live[row]
        for col in range(hi - lo):
            track = assigned[col]
            if track < 0:
                # Unmatched detections start tracks in their order within the frame.
                track = len(last_t)
                last_det.append(0)
                last_t.append(0)
            last_det[track], last_t[track] = lo + col, t
            owner[lo + col] = track
    return np.asarray(owner, dtype=np.int64)


def _link_frames(
    grown: NDArray[np.float64],
    every: NDArray[np.float64] | None,
    offsets: list[int],
    max_gap: int,
    link_iou: float,
) -> tuple[NDArray[np.int64], int]:
    """The owner track of each detection and the number of tracks, frame by frame in numpy."""
    total = offsets[-1]
    owner = np.empty(total, dtype=np.int64)
    # Per track (at most one per detection): the detection it was last seen as, and on which frame.
    last_det = np.empty(total, dtype=np.int64)
    last_t = np.empty(total, dtype=np.int64)
    n_tracks = 0
    for t in range(len(offsets) - 1):
        lo, hi = offsets[t], offsets[t + 1]
        if lo == hi:
            continue
        assigned = np.full(hi - lo, -1, dtype=np.int64)
        live = np.flatnonzero(last_t[:n_tracks] >= t - max_gap - 1)
        if live.size:
            rows_of = last_det[live]
            iou = every[rows_of, lo:hi] if every is not None else iou_matrix(grown[rows_of], grown[lo:hi])
            rows, cols = greedy_pairs(iou, link_iou)
            assigned[cols] = live[rows]
        new = np.flatnonzero(assigned < 0)
        # Unmatched detections start tracks in their order within the frame.
        assigned[new] = np.arange(n_tracks, n_tracks + new.size)
        n_tracks += new.size
        last_det[assigned] = np.arange(lo, hi)
        last_t[assigned] = t
        owner[lo:hi] = assigned
    return owner, n_tracks


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
    arrays = link_track_arrays(detections, max_gap=max_gap, link_iou=link_iou, link_scale=link_scale)
    return arrays.to_tracks()
