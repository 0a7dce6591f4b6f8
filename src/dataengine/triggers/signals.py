"""The math of the detection triggers, on plain per-frame detections (no model, no storage).

Every function takes one :class:`Detections` per sampled frame (scores down to the candidate threshold)
and the clip frame indices, and returns a :class:`TriggerResult` whose ``frames`` are clip frame indices.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence, Sized
from typing import Any

import numpy as np

from dataengine.triggers.base import TriggerResult
from dataengine.triggers.tracks import Track, consecutive_iou, link_tracks
from dataengine.vision.boxes import greedy_match, pairwise_iou
from dataengine.vision.inference import Detections

#: A never-confident track counts as a near miss at most this much, below a real flicker.
NEAR_MISS_CAP = 0.5


def check_lengths(frame_indices: Sequence[int], *per_frame: Sized) -> None:
    """Raise ValueError unless every per-frame sequence has one value per frame."""
    for values in per_frame:
        if len(values) != len(frame_indices):
            raise ValueError(f"{len(values)} per-frame values for {len(frame_indices)} frames")


def unit(value: float) -> float:
    """``value`` clamped to [0, 1]."""
    return float(min(1.0, max(0.0, value)))


def _gaps(track: Track, threshold: float, max_gap: int) -> list[int]:
    """Frame positions at which a shown track had vanished for 1..max_gap frames before returning."""
    shown = [track.t[i] for i in track.confident(threshold)]
    return [p for a, b in itertools.pairwise(shown) if 1 < b - a <= max_gap + 1 for p in range(a + 1, b)]


def _single_frame(track: Track, threshold: float, n_frames: int) -> list[int]:
    """The frame position of a track shown on exactly one frame that is not at the clip's edge."""
    shown = [track.t[i] for i in track.confident(threshold)]
    # At an edge the object may simply be entering or leaving the view.
    return shown if len(shown) == 1 and 0 < shown[0] < n_frames - 1 else []


def _near_miss(track: Track, threshold: float, floor: float, n_frames: int) -> float:
    """How much a never-shown track looks like an object the detector is unsure of, in [0, 1]."""
    span = max(threshold - floor, 1e-6)
    closeness = sum(min(1.0, max(0.0, (score - floor) / span)) for score in track.scores)
    return closeness / n_frames


def flicker_score(
    detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    score_threshold: float = 0.5,
    candidate_threshold: float = 0.05,
    max_gap: int = 3,
    tracks: Sequence[Track] | None = None,
) -> TriggerResult:
    """Objects that vanish for a few frames and return, or show up in a single frame.

    Detections are linked into tracks (down to ``candidate_threshold``); an object is *shown* on frames
    where its score reaches ``score_threshold``. The score is the fraction of shown tracks that flicker:
    a gap of 1..``max_gap`` frames between shown frames, or one shown frame away from the clip's edges.
    When nothing flickers, tracks that are never shown but stay near the threshold still score, up to
    :data:`NEAR_MISS_CAP`: a detector that sees something and never commits is worth a look too.
    ``tracks`` may be given, already linked from ``detections`` with the same ``max_gap``.
    """
    check_lengths(frame_indices, detections)
    n = len(detections)
    if tracks is None:
        tracks = link_tracks(detections, max_gap=max_gap)
    shown = [tr for tr in tracks if tr.confident(score_threshold)]
    gaps = {tr.track_id: _gaps(tr, score_threshold, max_gap) for tr in shown}
    singles = {tr.track_id: _single_frame(tr, score_threshold, n) for tr in shown}
    flickering = [tid for tid in gaps if gaps[tid] or singles[tid]]
    unsure = [tr for tr in tracks if not tr.confident(score_threshold)]
    near = max((_near_miss(tr, score_threshold, candidate_threshold, n) for tr in unsure), default=0.0)
    fraction = len(flickering) / len(shown) if shown else 0.0
    positions = sorted({p for tid in flickering for p in gaps[tid] + singles[tid]})
    details: dict[str, Any] = {
        "tracks": len(shown),
        "flickering_tracks": len(flickering),
        "vanish_and_return": sum(1 for ps in gaps.values() if ps),
        "single_frame": sum(1 for ps in singles.values() if ps),
        "near_miss": round(near, 6),
        "unsure_tracks": len(unsure),
        "detections_per_frame": [int((d.scores >= score_threshold).sum()) for d in detections],
    }
    score = max(fraction, NEAR_MISS_CAP * near)
    return TriggerResult(
        score=unit(score), frames=[int(frame_indices[p]) for p in positions], details=details
    )


def _track_inconsistency(
    track: Track, *, jump_iou: float, smooth_iou: float, oscillation: float
) -> dict[str, list[int]]:
    """Frame positions of class flips, box jumps and score swings within one track."""
    labels, scores, t = track.labels, np.asarray(track.scores), track.t
    flips = [t[i] for i in range(1, len(track)) if labels[i] != labels[i - 1]]
    ious = consecutive_iou(np.stack(track.boxes_xyxy)) if len(track) else np.zeros(0)
    jumps: list[int] = []
    # A jump counts only where the track otherwise moves smoothly: an erratic track is not "a jump".
    if ious.size >= 2 and float(np.median(ious)) >= smooth_iou:
        jumps = [t[i + 1] for i in np.flatnonzero(ious < jump_iou).tolist()]
    steps = np.diff(scores)
    big = np.abs(steps) >= oscillation
    # A swing is a large step followed by a large step the other way: up-down or down-up.
    swings = [
        t[i + 1]
        for i in range(len(steps) - 1)
        if big[i] and big[i + 1] and np.sign(steps[i]) != np.sign(steps[i + 1])
    ]
    return {"class_flips": flips, "box_jumps": jumps, "score_swings": swings}


def temporal_score(
    detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    score_threshold: float = 0.5,
    max_gap: int = 3,
    jump_iou: float = 0.3,
    smooth_iou: float = 0.5,
    oscillation: float = 0.25,
    tracks: Sequence[Track] | None = None,
) -> TriggerResult:
    """Inconsistency within tracks: class flips, box jumps and score oscillation.

    Tracks are linked class-agnostically; only tracks shown (score >= ``score_threshold``) on at least two
    frames count, and class flips only between shown observations. A *box jump* is a consecutive IoU
    under ``jump_iou`` in a track whose median consecutive IoU is at least ``smooth_iou``; a *swing* is a
    score change of at least ``oscillation`` followed by one as large the other way. The score is the
    fraction of counted tracks with any of the three. ``tracks`` may be given, already linked.
    """
    check_lengths(frame_indices, detections)
    linked = link_tracks(detections, max_gap=max_gap) if tracks is None else tracks
    counted = [tr for tr in linked if len(tr.confident(score_threshold)) >= 2]
    totals = {"class_flips": 0, "box_jumps": 0, "score_swings": 0}
    positions: set[int] = set()
    inconsistent = 0
    for track in counted:
        shown = _subtrack(track, track.confident(score_threshold))
        found = _track_inconsistency(track, jump_iou=jump_iou, smooth_iou=smooth_iou, oscillation=oscillation)
        found["class_flips"] = [
            shown.t[i] for i in range(1, len(shown)) if shown.labels[i] != shown.labels[i - 1]
        ]
        for kind, where in found.items():
            totals[kind] += len(where)
            positions.update(where)
        inconsistent += any(found.values())
    score = inconsistent / len(counted) if counted else 0.0
    details: dict[str, Any] = {"tracks": len(counted), "inconsistent_tracks": inconsistent, **totals}
    return TriggerResult(
        score=unit(score), frames=[int(frame_indices[p]) for p in sorted(positions)], details=details
    )


def _subtrack(track: Track, keep: list[int]) -> Track:
    sub = Track(track_id=track.track_id)
    for i in keep:
        sub.add(track.t[i], track.boxes_xyxy[i], track.scores[i], track.labels[i])
    return sub


def compare_frame(a: Detections, b: Detections, *, iou_threshold: float = 0.5) -> tuple[int, int, int, int]:
    """``(matched, unmatched_a, unmatched_b, class_conflicts)`` of two detection sets of one frame.

    Boxes pair one-to-one, class-agnostically, at IoU >= ``iou_threshold``; a pair whose labels differ is
    a class conflict (and still matched).
    """
    if len(a) == 0 or len(b) == 0:
        return 0, len(a), len(b), 0
    rows, cols = greedy_match(pairwise_iou(a.boxes_xyxy, b.boxes_xyxy), iou_threshold=iou_threshold)
    conflicts = int((a.labels[rows] != b.labels[cols]).sum())
    return int(rows.size), len(a) - int(rows.size), len(b) - int(cols.size), conflicts


def disagreement_score(
    detections: Sequence[Detections],
    other_detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    fire_disagreement: float = 0.5,
) -> TriggerResult:
    """How differently two models see a clip: unmatched boxes and class conflicts at IoU 0.5.

    Per frame, over the confident boxes of both (score >= ``score_threshold``): disagreement =
    (unmatched boxes of either + class conflicts) / (boxes of the union), 0 when both find nothing. The
    score is the mean over frames; ``frames`` are those at or above ``fire_disagreement``.
    """
    check_lengths(frame_indices, detections, other_detections)
    per_frame: list[float] = []
    totals = np.zeros(4, dtype=np.int64)
    for a, b in zip(detections, other_detections, strict=True):
        counts = compare_frame(
            a.above(score_threshold), b.above(score_threshold), iou_threshold=iou_threshold
        )
        matched, only_a, only_b, conflicts = counts
        union = matched + only_a + only_b
        per_frame.append((only_a + only_b + conflicts) / union if union else 0.0)
        totals += counts
    score = float(np.mean(per_frame)) if per_frame else 0.0
    fired = [int(i) for i, d in zip(frame_indices, per_frame, strict=True) if d >= fire_disagreement]
    details: dict[str, Any] = {
        "matched": int(totals[0]),
        "unmatched": int(totals[1]),
        "unmatched_other": int(totals[2]),
        "class_conflicts": int(totals[3]),
        "max_frame_disagreement": round(max(per_frame, default=0.0), 6),
    }
    return TriggerResult(score=unit(score), frames=fired, details=details)
