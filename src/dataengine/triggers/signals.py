"""The math of the detection triggers, on plain per-frame detections (no model, no storage).

Every function takes one :class:`Detections` per sampled frame (scores down to the candidate threshold)
and the clip frame indices, and returns a :class:`TriggerResult` whose ``frames`` are clip frame indices.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.triggers.base import TriggerResult
from dataengine.triggers.tracks import (
    TrackArrays,
    link_track_arrays,
)
from dataengine.vision.boxes import consecutive_iou, greedy_match, pairwise_iou
from dataengine.vision.inference import Detections
from dataengine.vision.tracks import Track

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


def _as_arrays(
    detections: Sequence[Detections], max_gap: int, tracks: Sequence[Track] | TrackArrays | None
) -> TrackArrays:
    if tracks is None:
        return link_track_arrays(detections, max_gap=max_gap)
    return tracks if isinstance(tracks, TrackArrays) else TrackArrays.from_tracks(tracks)


def flicker_score(
    detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    score_threshold: float = 0.5,
    candidate_threshold: float = 0.05,
    max_gap: int = 3,
    tracks: Sequence[Track] | TrackArrays | None = None,
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
    arrays = _as_arrays(detections, max_gap, tracks)
    confident = arrays.scores >= score_threshold
    track, t = arrays.track[confident], arrays.positions[confident]
    n_shown = np.bincount(track, minlength=arrays.n_tracks)
    # Gaps: consecutive shown observations of one track 2..max_gap+1 frames apart.
    step = t[1:] - t[:-1]
    gap = (track[1:] == track[:-1]) & (step > 1) & (step <= max_gap + 1)
    gap_positions = [
        p for a, b in zip(t[:-1][gap].tolist(), t[1:][gap].tolist(), strict=True) for p in range(a + 1, b)
    ]
    gap_tracks = set(track[1:][gap].tolist())
    # At an edge the object may simply be entering or leaving the view.
    single = (n_shown[track] == 1) & (t > 0) & (t < n - 1)
    single_tracks = set(track[single].tolist())
    flickering = gap_tracks | single_tracks
    shown = int((n_shown > 0).sum())
    # Near misses: a never-shown track's summed closeness to the threshold, per frame of the clip.
    unsure = n_shown == 0  # every track has at least one observation
    span = max(score_threshold - candidate_threshold, 1e-6)
    closeness = np.clip((arrays.scores - candidate_threshold) / span, 0.0, 1.0)
    summed = np.bincount(arrays.track, weights=closeness, minlength=arrays.n_tracks)
    near = float(summed[unsure].max()) / n if unsure.any() else 0.0
    fraction = len(flickering) / shown if shown else 0.0
    positions = sorted(set(gap_positions) | set(t[single].tolist()))
    details: dict[str, Any] = {
        "tracks": shown,
        "flickering_tracks": len(flickering),
        "vanish_and_return": len(gap_tracks),
        "single_frame": len(single_tracks),
        "near_miss": round(near, 6),
        "unsure_tracks": int(unsure.sum()),
        "detections_per_frame": [int((d.scores >= score_threshold).sum()) for d in detections],
    }
    score = max(fraction, NEAR_MISS_CAP * near)
    return TriggerResult(
        score=unit(score), frames=[int(frame_indices[p]) for p in positions], details=details
    )


def _group_median(
    groups: NDArray[np.int64], values: NDArray[np.float64], n_groups: int
) -> NDArray[np.float64]:
    """The median of ``values`` per group id (NaN for a group without values), like ``np.median``."""
    out = np.full(n_groups, np.nan)
    if values.size == 0:
        return out
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    low = starts[has] + (counts[has] - 1) // 2
    high = starts[has] + counts[has] // 2
    out[has] = (ordered[low] + ordered[high]) / 2.0
    return out


def temporal_score(
    detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    score_threshold: float = 0.5,
    max_gap: int = 3,
    jump_iou: float = 0.3,
    smooth_iou: float = 0.5,
    oscillation: float = 0.25,
    tracks: Sequence[Track] | TrackArrays | None = None,
) -> TriggerResult:
    """Inconsistency within tracks: class flips, box jumps and score oscillation.

    Tracks are linked class-agnostically; only tracks shown (score >= ``score_threshold``) on at least two
    frames count, and class flips only between shown observations. A *box jump* is a consecutive IoU
    under ``jump_iou`` in a track whose median consecutive IoU is at least ``smooth_iou`` (and that has
    at least two of them); a *swing* is a score change of at least ``oscillation`` followed by one as
    large the other way. The score is the fraction of counted tracks with any of the three. ``tracks``
    may be given, already linked. Every step is an array operation over all tracks of the clip.
    """
    check_lengths(frame_indices, detections)
    arrays = _as_arrays(detections, max_gap, tracks)
    confident = arrays.scores >= score_threshold
    n_shown = np.bincount(arrays.track[confident], minlength=arrays.n_tracks)
    counted = n_shown >= 2
    # Class flips, between consecutive shown observations of a counted track.
    track_c, t_c, labels_c = arrays.track[confident], arrays.positions[confident], arrays.labels[confident]
    flip = (track_c[1:] == track_c[:-1]) & (labels_c[1:] != labels_c[:-1])
    flip_track, flip_t = track_c[1:][flip], t_c[1:][flip]
    # Box jumps and swings, between consecutive observations (shown or not) of a counted track.
    pair = (arrays.track[1:] == arrays.track[:-1]) & counted[arrays.track[1:]]
    pair_track = arrays.track[1:][pair]
    ious = consecutive_iou(arrays.boxes_xyxy)[pair]
    n_pairs = np.bincount(pair_track, minlength=arrays.n_tracks)
    median = _group_median(pair_track, ious, arrays.n_tracks)
    # A jump counts only where the track otherwise moves smoothly: an erratic track is not "a jump".
    smooth = (n_pairs >= 2) & (np.nan_to_num(median, nan=-1.0) >= smooth_iou)
    jump = smooth[pair_track] & (ious < jump_iou)
    jump_track, jump_t = pair_track[jump], arrays.positions[1:][pair][jump]
    steps = np.diff(arrays.scores)
    big = pair & (np.abs(steps) >= oscillation)
    # A swing is a large step followed by a large step the other way, within one track: at the middle.
    swing = big[:-1] & big[1:] & (np.sign(steps[:-1]) != np.sign(steps[1:]))
    swing_track, swing_t = arrays.track[1:-1][swing], arrays.positions[1:-1][swing]
    totals = {
        "class_flips": int(flip_t.size),
        "box_jumps": int(jump_t.size),
        "score_swings": int(swing_t.size),
    }
    inconsistent = len(set(flip_track.tolist()) | set(jump_track.tolist()) | set(swing_track.tolist()))
    n_counted = int(counted.sum())
    positions = set(flip_t.tolist()) | set(jump_t.tolist()) | set(swing_t.tolist())
    score = inconsistent / n_counted if n_counted else 0.0
    details: dict[str, Any] = {"tracks": n_counted, "inconsistent_tracks": inconsistent, **totals}
    return TriggerResult(
        score=unit(score), frames=[int(frame_indices[p]) for p in sorted(positions)], details=details
    )


def class_rarity(class_prior: Sequence[float]) -> NDArray[np.float64]:
    """Per class, how rare it is in the training labels: ``1 - K * share`` clamped to [0, 1].

    ``class_prior`` holds each class's box count (or share) in the data the model learnt from; with
    ``K`` classes, a class at its fair share ``1 / K`` or above is not rare (0), one never labelled is
    as rare as it gets (1). All zero (nothing known) gives 0 for every class.
    """
    prior = np.asarray(class_prior, dtype=np.float64)
    total = prior.sum()
    if prior.size == 0 or total <= 0:
        return np.zeros(prior.size)
    rarity: NDArray[np.float64] = np.clip(1.0 - prior.size * prior / total, 0.0, 1.0)
    return rarity


def rare_class_score(
    detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    class_prior: Sequence[float],
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.5,
    max_gap: int = 3,
    tracks: Sequence[Track] | TrackArrays | None = None,
) -> TriggerResult:
    """Objects of a class that is rare in the promoted model's training labels.

    Per track and class, over the track's shown observations (score >= ``score_threshold``): the
    *evidence* is the share of them with that class times ``1 - prod(1 - score)`` over those with it, so
    one shown frame at 0.6 gives 0.6, three give 0.94, and a track that is mostly another class weighs
    little (its flip is the temporal trigger's business). The score is the largest
    ``class_rarity * evidence`` over the clip's tracks; ``frames`` are that track's observations of the
    class. ``class_prior`` is indexed by label, as :func:`class_rarity` reads it.
    """
    check_lengths(frame_indices, detections)
    rarity = class_rarity(class_prior)
    arrays = _as_arrays(detections, max_gap, tracks)
    n_classes = rarity.size
    shown = (arrays.scores >= score_threshold) & (arrays.labels >= 0) & (arrays.labels < n_classes)
    track, labels, t = arrays.track[shown], arrays.labels[shown], arrays.positions[shown]
    details: dict[str, Any] = {"rare_tracks": 0}
    if track.size == 0 or not rarity.any():
        return TriggerResult(score=0.0, details=details)
    key = track * n_classes + labels
    size = arrays.n_tracks * n_classes
    n_key = np.bincount(key, minlength=size)
    n_track = np.bincount(track, minlength=arrays.n_tracks)
    # Noisy-or of the observations' scores, as a sum of logs (clipped so a score of 1 stays finite).
    log_miss = np.bincount(
        key, weights=np.log1p(-np.minimum(arrays.scores[shown], 1.0 - 1e-9)), minlength=size
    )
    evidence = (1.0 - np.exp(log_miss)) * n_key / np.maximum(np.repeat(n_track, n_classes), 1)
    value = evidence * np.tile(rarity, arrays.n_tracks)
    best = int(np.argmax(value))
    score = float(value[best])
    if score <= 0.0:
        return TriggerResult(score=0.0, details=details)
    best_class = best % n_classes
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    total = float(np.sum(class_prior))
    details = {
        "rare_tracks": int((value > 0).sum()),
        "class": names[best_class],
        "rarity": round(float(rarity[best_class]), 4),
        "prior_share": round(float(class_prior[best_class]) / total, 6),
        "evidence": round(float(evidence[best]), 4),
        "observations": int(n_key[best]),
    }
    positions = t[key == best]
    return TriggerResult(
        score=unit(score), frames=[int(frame_indices[p]) for p in positions], details=details
    )


def compare_frame(a: Detections, b: Detections, *, iou_threshold: float = 0.5) -> tuple[int, int, int, int]:
    """``(matched, unmatched_a, unmatched_b, class_conflicts)`` of two detection sets of one frame.

    Boxes pair one-to-one, class-agnostically, at IoU >= ``iou_threshold``; a pair whose labels differ is
    a class conflict (and still matched).
    """
    return _compare(a.boxes_xyxy, a.labels, b.boxes_xyxy, b.labels, iou_threshold)


def _compare(
    boxes_a: NDArray[np.floating],
    labels_a: NDArray[np.int64],
    boxes_b: NDArray[np.floating],
    labels_b: NDArray[np.int64],
    iou_threshold: float,
) -> tuple[int, int, int, int]:
    n_a, n_b = len(labels_a), len(labels_b)
    if n_a == 0 or n_b == 0:
        return 0, n_a, n_b, 0
    iou = pairwise_iou(
        np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4),
        np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4),
    )
    rows, cols = greedy_match(iou, iou_threshold=iou_threshold)
    conflicts = int((labels_a[rows] != labels_b[cols]).sum())
    return int(rows.size), n_a - int(rows.size), n_b - int(cols.size), conflicts


def _stacked(
    detections: Sequence[Detections], keep: Sequence[NDArray[np.bool_]]
) -> tuple[NDArray[np.float64], NDArray[np.int64], list[int]]:
    """The kept boxes (float64) and labels of all frames, stacked, and where each frame's rows start."""
    counts = [int(k.sum()) for k in keep]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int).tolist()
    if not detections:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), starts
    boxes = np.concatenate([d.boxes_xyxy[k] for d, k in zip(detections, keep, strict=True)])
    labels = np.concatenate([d.labels[k] for d, k in zip(detections, keep, strict=True)])
    return boxes.astype(np.float64).reshape(-1, 4), labels.astype(np.int64), starts


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
    n = len(frame_indices)
    # The confident boxes of every frame, stacked, and one IoU matrix between both models' stacks: a
    # frame's comparison is its block of it (one small matrix per frame costs more in overhead).
    kept_a = [a.scores >= score_threshold for a in detections]
    kept_b = [b.scores >= score_threshold for b in other_detections]
    boxes_a, labels_a, starts_a = _stacked(detections, kept_a)
    boxes_b, labels_b, starts_b = _stacked(other_detections, kept_b)
    count_a, count_b = np.diff(starts_a).astype(np.int64), np.diff(starts_b).astype(np.int64)
    matched = np.zeros(n, dtype=np.int64)
    conflicts = np.zeros(n, dtype=np.int64)
    if boxes_a.size and boxes_b.size:
        every = pairwise_iou(boxes_a, boxes_b)
        frame_a, frame_b = np.repeat(np.arange(n), count_a), np.repeat(np.arange(n), count_b)
        same_frame = frame_a[:, None] == frame_b[None, :]
        rows, cols = np.nonzero(same_frame & (every >= iou_threshold) & (every > 0))
        # Where no box has two candidates, every candidate pair is a match; frames with a crowded box
        # are matched greedily, block by block.
        crowded_rows = np.bincount(rows, minlength=len(boxes_a))[rows] > 1
        crowded_cols = np.bincount(cols, minlength=len(boxes_b))[cols] > 1
        crowded = np.unique(frame_a[rows[crowded_rows | crowded_cols]])
        simple = ~np.isin(frame_a[rows], crowded)
        differ = labels_a[rows[simple]] != labels_b[cols[simple]]
        matched += np.bincount(frame_a[rows[simple]], minlength=n)
        conflicts += np.bincount(frame_a[rows[simple]][differ], minlength=n)
        for f in crowded.tolist():
            a0, a1, b0, b1 = starts_a[f], starts_a[f + 1], starts_b[f], starts_b[f + 1]
            pick_rows, pick_cols = greedy_match(every[a0:a1, b0:b1], iou_threshold=iou_threshold)
            matched[f] = pick_rows.size
            conflicts[f] = int((labels_a[a0 + pick_rows] != labels_b[b0 + pick_cols]).sum())
    only_a, only_b = count_a - matched, count_b - matched
    union = matched + only_a + only_b
    per_frame = np.zeros(n)
    np.divide(only_a + only_b + conflicts, union, out=per_frame, where=union > 0)
    totals = [int(matched.sum()), int(only_a.sum()), int(only_b.sum()), int(conflicts.sum())]
    score = float(per_frame.mean()) if n else 0.0
    fired = [int(frame_indices[i]) for i in np.flatnonzero(per_frame >= fire_disagreement).tolist()]
    details: dict[str, Any] = {
        "matched": int(totals[0]),
        "unmatched": int(totals[1]),
        "unmatched_other": int(totals[2]),
        "class_conflicts": int(totals[3]),
        "max_frame_disagreement": round(float(per_frame.max(initial=0.0)), 6),
    }
    return TriggerResult(score=unit(score), frames=fired, details=details)
