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
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dataengine.vision.boxes import greedy_match, grow_boxes, pairwise_iou
from dataengine.vision.inference import Detections
from dataengine.vision.tracks import Track

#: Up to this many detections in a clip, linking computes one IoU matrix between all of them.
FULL_MATRIX_LIMIT = 400
#: Up to this many, it then links in plain Python (see :func:`_link_small`).
SMALL_CLIP_LIMIT = 64


@dataclass(frozen=True, slots=True)
class TrackArrays:
    """Every track of a clip as flat arrays, one row per observation, sorted by track and then by position.

    ``track`` holds the track id (0..``n_tracks`` - 1, in order of first appearance) and ``positions`` the
    sampled-frame position; ``scores`` are float64 (the detector's float32 values, widened).
    """

    track: NDArray[np.int64]
    positions: NDArray[np.int64]
    boxes_xyxy: NDArray[np.float32]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]
    n_tracks: int

    @classmethod
    def from_tracks(cls, tracks: Sequence[Track]) -> TrackArrays:
        """The arrays of :class:`Track` objects (renumbered 0.. in the order given)."""
        lengths = [len(tr) for tr in tracks]
        boxes = [b for tr in tracks for b in tr.boxes]
        return cls(
            track=np.repeat(np.arange(len(tracks), dtype=np.int64), lengths),
            positions=np.asarray([p for tr in tracks for p in tr.positions], dtype=np.int64),
            boxes_xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            scores=np.asarray([s for tr in tracks for s in tr.scores], dtype=np.float64),
            labels=np.asarray([label for tr in tracks for label in tr.labels], dtype=np.int64),
            n_tracks=len(tracks),
        )

    def to_tracks(self) -> list[Track]:
        """The same tracks as :class:`Track` objects."""
        tracks = [Track(id=i) for i in range(self.n_tracks)]
        for row in range(self.track.size):
            tracks[int(self.track[row])].add(
                int(self.positions[row]), self.boxes_xyxy[row], float(self.scores[row]), int(self.labels[row])
            )
        return tracks


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
    every = pairwise_iou(grown, grown) if total <= FULL_MATRIX_LIMIT else None
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
            iou = every[rows_of, lo:hi] if every is not None else pairwise_iou(grown[rows_of], grown[lo:hi])
            rows, cols = greedy_match(iou, iou_threshold=link_iou)
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
