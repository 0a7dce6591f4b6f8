"""The detection triggers (flicker, temporal, rare_class, disagreement) on every clip of a chunk at once.

The per-clip functions of :mod:`dataengine.triggers.signals` spend most of their time in the overhead
of a few dozen numpy calls per clip, each on a handful of boxes. Here the detections of all clips of a
chunk are one set of flat arrays (one row per detection, with its clip and frame position): track
linking loops over frame positions only, every clip's frame ``t`` at once, and each trigger's
reductions are grouped by track and by clip. Then one loop over the clips builds the results.

The results equal the per-clip functions' exactly: every number comes from the same floating-point
operations on the same values, in the same order (sums per track add the same observations in the same
order; a clip's mean over its frames is taken on that clip's slice). Greedy matching is done in rounds
of *mutual best* pairs, which picks exactly the pairs that one greedy pass in the same order picks
(see :func:`greedy_pairs`). ``tests/unit/test_triggers_chunk.py`` checks every result against the
per-clip functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.triggers.base import TriggerResult
from dataengine.triggers.image_signals import FrameStats
from dataengine.triggers.signals import NEAR_MISS_CAP, _group_median, class_rarity, unit
from dataengine.vision.boxes import consecutive_iou, grow_boxes
from dataengine.vision.inference import Detections

_INT = np.int64


@dataclass(frozen=True, slots=True)
class ChunkDetections:
    """One model's detections of every clip of a chunk, one row per detection, ordered by clip, then
    frame position, then order within the frame (the per-clip functions' concatenation order)."""

    clip: NDArray[np.int64]
    position: NDArray[np.int64]
    #: The row's frame among all frames of the chunk (clip ``c``'s frames are ``frame_start[c]..``).
    frame: NDArray[np.int64]
    boxes_xyxy: NDArray[np.float32]
    #: The scores as the detector gave them (float32 from every backend), compared in that type.
    scores: NDArray[np.floating[Any]]
    labels: NDArray[np.int64]
    #: Sampled frames per clip, and where each clip's frames start (length clips + 1).
    n_frames: NDArray[np.int64]
    frame_start: NDArray[np.int64]

    @property
    def n_clips(self) -> int:
        """How many clips the chunk holds."""
        return int(self.n_frames.size)


def stack_detections(clips: Sequence[Sequence[Detections]]) -> ChunkDetections:
    """The flat arrays of per-clip, per-frame detections (see :class:`ChunkDetections`)."""
    n_frames = np.asarray([len(frames) for frames in clips], dtype=_INT)
    frame_start = np.concatenate([[0], np.cumsum(n_frames)]).astype(_INT)
    per_frame = [d for frames in clips for d in frames]
    counts = np.asarray([len(d) for d in per_frame], dtype=_INT)
    n_all = int(frame_start[-1])
    frame = np.repeat(np.arange(n_all, dtype=_INT), counts)
    clip_of_frame = np.repeat(np.arange(len(clips), dtype=_INT), n_frames)
    position_of_frame = np.arange(n_all, dtype=_INT) - np.repeat(frame_start[:-1], n_frames)
    if per_frame:
        boxes = np.concatenate([d.boxes_xyxy for d in per_frame]).astype(np.float32, copy=False)
        scores = np.concatenate([d.scores for d in per_frame])
        labels = np.concatenate([d.labels for d in per_frame]).astype(_INT, copy=False)
    else:
        boxes, scores, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, _INT)
    return ChunkDetections(
        clip=clip_of_frame[frame],
        position=position_of_frame[frame],
        frame=frame,
        boxes_xyxy=boxes.reshape(-1, 4),
        scores=scores,
        labels=labels,
        n_frames=n_frames,
        frame_start=frame_start,
    )


def uniform_score_type(clips: Sequence[Sequence[Detections]]) -> bool:
    """Whether every frame's scores have one dtype: the per-clip functions compare each frame's scores
    in its own type, and stacked frames of mixed types would be compared in the widest."""
    kinds = {d.scores.dtype for frames in clips for d in frames}
    return len(kinds) <= 1


def _pair_iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The IoU of each row of ``a`` with the same row of ``b``: :func:`pairwise_iou`'s operations, in its
    order, on pairs instead of a matrix (so each value is the same to the last bit)."""
    wh = np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2])
    np.maximum(wh, 0.0, out=wh)
    intersection = wh[:, 0] * wh[:, 1]
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a + area_b - intersection
    iou: NDArray[np.float64] = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou


def _pairs_by_group(
    group_a: NDArray[np.int64], group_b: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every pair ``(i, j)`` of an ``a`` and a ``b`` element with the same group, ``i`` then ``j``
    ascending. ``group_b`` must be sorted."""
    lo = np.searchsorted(group_b, group_a, side="left")
    hi = np.searchsorted(group_b, group_a, side="right")
    n = hi - lo
    total = int(n.sum())
    i = np.repeat(np.arange(group_a.size, dtype=_INT), n)
    within = np.arange(total, dtype=_INT) - np.repeat(np.cumsum(n) - n, n)
    return i, np.repeat(lo, n) + within


def greedy_pairs(
    iou: NDArray[np.float64], rows: NDArray[np.int64], cols: NDArray[np.int64]
) -> NDArray[np.intp]:
    """Which candidate pairs ``(rows[k], cols[k])`` greedy matching keeps: by descending IoU, ties to the
    lower row, then the lower column, each row and column at most once (:func:`greedy_match`).

    Rows and columns of different clips never share a number, so all clips are matched at once. In
    rounds: a pair that comes first among all pairs of its row and of its column is one that the single
    greedy pass takes (nothing before it can have used its row or column); taking those and dropping
    every other pair of their rows and columns leaves the same decisions to make on the rest, and each
    round takes at least the first remaining pair.
    """
    if rows.size == 0:
        return np.zeros(0, dtype=np.intp)
    if np.unique(rows).size == rows.size and np.unique(cols).size == cols.size:
        return np.arange(rows.size)  # no row or column has two candidates: every pair is a match
    order = np.lexsort((cols, rows, -iou))
    r, c = rows[order], cols[order]
    alive = np.ones(order.size, dtype=bool)
    kept = np.zeros(order.size, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        first_r = np.zeros(idx.size, dtype=bool)
        first_c = np.zeros(idx.size, dtype=bool)
        first_r[np.unique(r[idx], return_index=True)[1]] = True
        first_c[np.unique(c[idx], return_index=True)[1]] = True
        take = idx[first_r & first_c]
        kept[take] = True
        alive &= ~(np.isin(r, r[take]) | np.isin(c, c[take]))
    return np.sort(order[kept])


@dataclass(frozen=True, slots=True)
class ChunkTracks:
    """Every track of every clip of a chunk, one row per observation, sorted by track, then position.

    Tracks are numbered by clip, then by first appearance within the clip, so a clip's tracks are
    ``track_start[c]..track_start[c + 1]`` and its rows are contiguous too. Per clip they are the
    :class:`~dataengine.triggers.tracks.TrackArrays` that :func:`link_track_arrays` gives.
    """

    track: NDArray[np.int64]
    positions: NDArray[np.int64]
    boxes_xyxy: NDArray[np.float32]
    scores: NDArray[np.float64]
    labels: NDArray[np.int64]
    #: The clip of each row and of each track, and where each clip's tracks start (length clips + 1).
    clip: NDArray[np.int64]
    track_clip: NDArray[np.int64]
    track_start: NDArray[np.int64]

    @property
    def n_tracks(self) -> int:
        """Tracks over all clips."""
        return int(self.track_clip.size)


def link_chunk(
    det: ChunkDetections, *, max_gap: int = 3, link_iou: float = 0.2, link_scale: float = 2.0
) -> ChunkTracks:
    """The tracks of :func:`~dataengine.triggers.tracks.link_track_arrays`, for every clip at once: the
    loop runs over frame positions, and at position ``t`` the detections of every clip's frame ``t`` are
    matched against the live tracks of their own clip."""
    total = det.scores.size
    grown = grow_boxes(det.boxes_xyxy, link_scale)
    owner = np.empty(total, dtype=_INT)
    # Per track (at most one per detection): its clip, the detection it was last seen as, and when.
    track_clip = np.empty(total, dtype=_INT)
    last_det = np.empty(total, dtype=_INT)
    last_t = np.empty(total, dtype=_INT)
    n_tracks = 0
    by_position = np.argsort(det.position, kind="stable")
    bounds = np.searchsorted(det.position[by_position], np.arange(int(det.n_frames.max(initial=0)) + 1))
    for t in range(bounds.size - 1):
        rows = by_position[bounds[t] : bounds[t + 1]]  # ordered by clip, then within the frame
        if rows.size == 0:
            continue
        assigned = np.full(rows.size, -1, dtype=_INT)
        live = np.flatnonzero(last_t[:n_tracks] >= t - max_gap - 1)
        if live.size:
            # Live tracks by clip, in track order within a clip; pairs only within a clip.
            live = live[np.argsort(track_clip[live], kind="stable")]
            j, k = _pairs_by_group(det.clip[rows], track_clip[live])
            tracks_k = live[k]
            iou = _pair_iou(grown[last_det[tracks_k]], grown[rows[j]])
            candidate = (iou >= link_iou) & (iou > 0)
            j, tracks_k, iou = j[candidate], tracks_k[candidate], iou[candidate]
            # Track numbers and row numbers keep each clip's order of live tracks and of detections.
            keep = greedy_pairs(iou, tracks_k, j)
            assigned[j[keep]] = tracks_k[keep]
        new = np.flatnonzero(assigned < 0)
        # Unmatched detections start tracks in their order within the frame.
        assigned[new] = np.arange(n_tracks, n_tracks + new.size)
        track_clip[n_tracks : n_tracks + new.size] = det.clip[rows[new]]
        n_tracks += new.size
        last_det[assigned] = rows
        last_t[assigned] = t
        owner[rows] = assigned
    # Renumber the tracks by clip, then by first appearance (creation order within a clip).
    by_clip = np.argsort(track_clip[:n_tracks], kind="stable")
    renumber = np.empty(n_tracks, dtype=_INT)
    renumber[by_clip] = np.arange(n_tracks, dtype=_INT)
    track = renumber[owner]
    # Rows are in frame order within a clip, so a stable sort by track keeps each track's order.
    order = np.argsort(track, kind="stable")
    clips_of_tracks = track_clip[by_clip]
    per_clip = np.bincount(clips_of_tracks, minlength=det.n_clips)
    return ChunkTracks(
        track=track[order],
        positions=det.position[order],
        boxes_xyxy=det.boxes_xyxy[order],
        scores=det.scores[order].astype(np.float64),
        labels=det.labels[order],
        clip=det.clip[order],
        track_clip=clips_of_tracks,
        track_start=np.concatenate([[0], np.cumsum(per_clip)]).astype(_INT),
    )


def _split_sorted(
    clip: NDArray[np.int64], values: NDArray[np.int64], n_clips: int, *, unique: bool = True
) -> list[list[int]]:
    """Per clip, its ``values`` sorted (and deduplicated when ``unique``), as lists."""
    if clip.size == 0:
        return [[] for _ in range(n_clips)]
    scale = int(values.max(initial=0)) + 1
    key = clip * scale + values
    key = np.unique(key) if unique else np.sort(key)
    owner = key // scale
    cuts = np.searchsorted(owner, np.arange(n_clips + 1)).tolist()
    flat = (key % scale).tolist()
    return [flat[cuts[c] : cuts[c + 1]] for c in range(n_clips)]


def _frame_indices(
    clip: NDArray[np.int64], positions: NDArray[np.int64], indices: Sequence[Sequence[int]], n_clips: int
) -> list[list[int]]:
    """Per clip, the clip frame indices of its sorted, distinct sampled-frame ``positions``."""
    split = _split_sorted(clip, positions, n_clips)
    return [[int(indices[c][p]) for p in ps] for c, ps in enumerate(split)]


def _count_by_clip(
    clip: NDArray[np.int64], n_clips: int, weights: NDArray[np.bool_] | None = None
) -> list[int]:
    """How many rows (or rows with ``weights`` set) each clip has."""
    counts = np.bincount(
        clip, weights=None if weights is None else weights.astype(np.float64), minlength=n_clips
    )
    out: list[int] = counts.astype(_INT).tolist()
    return out


def flicker_many(
    det: ChunkDetections,
    tracks: ChunkTracks,
    indices: Sequence[Sequence[int]],
    *,
    score_threshold: float = 0.5,
    candidate_threshold: float = 0.05,
    max_gap: int = 3,
) -> list[TriggerResult]:
    """:func:`~dataengine.triggers.signals.flicker_score` of every clip of the chunk."""
    n_clips, n_tracks = det.n_clips, tracks.n_tracks
    n_of_row = det.n_frames[tracks.clip]
    confident = tracks.scores >= score_threshold
    track, t = tracks.track[confident], tracks.positions[confident]
    n_shown = np.bincount(track, minlength=n_tracks)
    step = t[1:] - t[:-1]
    gap = (track[1:] == track[:-1]) & (step > 1) & (step <= max_gap + 1)
    gap_from, gap_to, gap_track = t[:-1][gap], t[1:][gap], track[1:][gap]
    # Every position strictly between the two shown observations of a gap.
    length = gap_to - gap_from - 1
    gap_positions = (
        np.repeat(gap_from, length)
        + 1
        + (np.arange(int(length.sum()), dtype=_INT) - np.repeat(np.cumsum(length) - length, length))
    )
    gap_clip = np.repeat(tracks.track_clip[gap_track], length)
    single = (n_shown[track] == 1) & (t > 0) & (t < n_of_row[confident] - 1)
    has_gap = np.zeros(n_tracks, dtype=bool)
    has_gap[gap_track] = True
    has_single = np.zeros(n_tracks, dtype=bool)
    has_single[track[single]] = True
    tc = tracks.track_clip
    flickering = _count_by_clip(tc, n_clips, has_gap | has_single)
    shown = _count_by_clip(tc, n_clips, n_shown > 0)
    vanish = _count_by_clip(tc, n_clips, has_gap)
    singles = _count_by_clip(tc, n_clips, has_single)
    unsure = n_shown == 0
    unsure_count = _count_by_clip(tc, n_clips, unsure)
    span = max(score_threshold - candidate_threshold, 1e-6)
    closeness = np.clip((tracks.scores - candidate_threshold) / span, 0.0, 1.0)
    summed = np.bincount(tracks.track, weights=closeness, minlength=n_tracks)
    # The largest summed closeness among each clip's never-shown tracks (the max is order-free).
    best_unsure = np.full(n_clips, -np.inf)
    np.maximum.at(best_unsure, tc[unsure], summed[unsure])
    best_list = best_unsure.tolist()
    positions = _frame_indices(
        np.concatenate([gap_clip, tracks.clip[confident][single]]),
        np.concatenate([gap_positions, t[single]]),
        indices,
        n_clips,
    )
    confident_all = det.scores >= score_threshold
    per_frame = np.bincount(
        det.frame, weights=confident_all.astype(np.float64), minlength=int(det.frame_start[-1])
    )
    per_frame_list = per_frame.astype(_INT).tolist()
    starts = det.frame_start.tolist()
    n_list = det.n_frames.tolist()
    results = []
    for c in range(n_clips):
        n = n_list[c]
        near = best_list[c] / n if unsure_count[c] else 0.0
        fraction = flickering[c] / shown[c] if shown[c] else 0.0
        details: dict[str, Any] = {
            "tracks": shown[c],
            "flickering_tracks": flickering[c],
            "vanish_and_return": vanish[c],
            "single_frame": singles[c],
            "near_miss": round(near, 6),
            "unsure_tracks": unsure_count[c],
            "detections_per_frame": per_frame_list[starts[c] : starts[c + 1]],
        }
        score = max(fraction, NEAR_MISS_CAP * near)
        results.append(TriggerResult(score=unit(score), frames=positions[c], details=details))
    return results


def temporal_many(
    det: ChunkDetections,
    tracks: ChunkTracks,
    indices: Sequence[Sequence[int]],
    *,
    score_threshold: float = 0.5,
    jump_iou: float = 0.3,
    smooth_iou: float = 0.5,
    oscillation: float = 0.25,
) -> list[TriggerResult]:
    """:func:`~dataengine.triggers.signals.temporal_score` of every clip of the chunk."""
    n_clips, n_tracks, tc = det.n_clips, tracks.n_tracks, tracks.track_clip
    confident = tracks.scores >= score_threshold
    n_shown = np.bincount(tracks.track[confident], minlength=n_tracks)
    counted = n_shown >= 2
    track_c, t_c, labels_c = tracks.track[confident], tracks.positions[confident], tracks.labels[confident]
    flip = (track_c[1:] == track_c[:-1]) & (labels_c[1:] != labels_c[:-1])
    flip_track, flip_t = track_c[1:][flip], t_c[1:][flip]
    pair = (tracks.track[1:] == tracks.track[:-1]) & counted[tracks.track[1:]]
    pair_track = tracks.track[1:][pair]
    ious = consecutive_iou(tracks.boxes_xyxy)[pair]
    n_pairs = np.bincount(pair_track, minlength=n_tracks)
    median = _group_median(pair_track, ious, n_tracks)
    smooth = (n_pairs >= 2) & (np.nan_to_num(median, nan=-1.0) >= smooth_iou)
    jump = smooth[pair_track] & (ious < jump_iou)
    jump_track, jump_t = pair_track[jump], tracks.positions[1:][pair][jump]
    steps = np.diff(tracks.scores)
    big = pair & (np.abs(steps) >= oscillation)
    swing = big[:-1] & big[1:] & (np.sign(steps[:-1]) != np.sign(steps[1:]))
    swing_track, swing_t = tracks.track[1:-1][swing], tracks.positions[1:-1][swing]
    flips = _count_by_clip(tc[flip_track], n_clips)
    jumps = _count_by_clip(tc[jump_track], n_clips)
    swings = _count_by_clip(tc[swing_track], n_clips)
    bad = np.zeros(n_tracks, dtype=bool)
    bad[flip_track] = bad[jump_track] = bad[swing_track] = True
    inconsistent = _count_by_clip(tc, n_clips, bad)
    n_counted = _count_by_clip(tc, n_clips, counted)
    all_tracks = np.concatenate([flip_track, jump_track, swing_track])
    positions = _frame_indices(tc[all_tracks], np.concatenate([flip_t, jump_t, swing_t]), indices, n_clips)
    results = []
    for c in range(n_clips):
        score = inconsistent[c] / n_counted[c] if n_counted[c] else 0.0
        details: dict[str, Any] = {
            "tracks": n_counted[c],
            "inconsistent_tracks": inconsistent[c],
            "class_flips": flips[c],
            "box_jumps": jumps[c],
            "score_swings": swings[c],
        }
        results.append(TriggerResult(score=unit(score), frames=positions[c], details=details))
    return results


def rare_class_many(
    det: ChunkDetections,
    tracks: ChunkTracks,
    indices: Sequence[Sequence[int]],
    *,
    class_prior: Sequence[float],
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.5,
) -> list[TriggerResult]:
    """:func:`~dataengine.triggers.signals.rare_class_score` of every clip of the chunk."""
    n_clips, n_tracks = det.n_clips, tracks.n_tracks
    rarity = class_rarity(class_prior)
    n_classes = rarity.size
    shown = (tracks.scores >= score_threshold) & (tracks.labels >= 0) & (tracks.labels < n_classes)
    track, labels, t = tracks.track[shown], tracks.labels[shown], tracks.positions[shown]
    if track.size == 0 or not rarity.any():
        return [TriggerResult(score=0.0, details={"rare_tracks": 0}) for _ in range(n_clips)]
    key = track * n_classes + labels
    size = n_tracks * n_classes
    n_key = np.bincount(key, minlength=size)
    n_track = np.bincount(track, minlength=n_tracks)
    log_miss = np.bincount(
        key, weights=np.log1p(-np.minimum(tracks.scores[shown], 1.0 - 1e-9)), minlength=size
    )
    evidence = (1.0 - np.exp(log_miss)) * n_key / np.maximum(np.repeat(n_track, n_classes), 1)
    value = evidence * np.tile(rarity, n_tracks)
    # Per clip, the first largest value among its (contiguous) keys, as np.argmax finds it.
    key_clip = np.repeat(tracks.track_clip, n_classes)
    has_shown = np.bincount(tracks.clip[shown], minlength=n_clips) > 0
    best_value = np.full(n_clips, -np.inf)
    np.maximum.at(best_value, key_clip, value)
    at_best = np.flatnonzero(value == best_value[key_clip])
    first = np.unique(key_clip[at_best], return_index=True)
    best_key = np.full(n_clips, -1, dtype=_INT)
    best_key[first[0]] = at_best[first[1]]
    rare_tracks = _count_by_clip(key_clip, n_clips, value > 0)
    on_best = key == best_key[tracks.clip[shown]]
    best_positions = _split_sorted(tracks.clip[shown][on_best], t[on_best], n_clips, unique=False)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    total = float(np.sum(class_prior))
    best_list, value_list = best_key.tolist(), value.tolist()
    evidence_list, n_key_list = evidence.tolist(), n_key.tolist()
    results = []
    for c in range(n_clips):
        best = best_list[c]
        score = value_list[best] if has_shown[c] and best >= 0 else 0.0
        if score <= 0.0:
            results.append(TriggerResult(score=0.0, details={"rare_tracks": 0}))
            continue
        best_class = best % n_classes
        details: dict[str, Any] = {
            "rare_tracks": rare_tracks[c],
            "class": names[best_class],
            "rarity": round(float(rarity[best_class]), 4),
            "prior_share": round(float(class_prior[best_class]) / total, 6),
            "evidence": round(evidence_list[best], 4),
            "observations": n_key_list[best],
        }
        frames = [int(indices[c][p]) for p in best_positions[c]]
        results.append(TriggerResult(score=unit(score), frames=frames, details=details))
    return results


def disagreement_many(
    det: ChunkDetections,
    other: ChunkDetections,
    indices: Sequence[Sequence[int]],
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    fire_disagreement: float = 0.5,
) -> list[TriggerResult]:
    """:func:`~dataengine.triggers.signals.disagreement_score` of every clip of the chunk (``det`` and
    ``other`` hold the same clips and frames)."""
    if not np.array_equal(det.n_frames, other.n_frames):
        raise ValueError("both models' detections must cover the same frames of the same clips")
    n_clips, n_all = det.n_clips, int(det.frame_start[-1])
    keep_a, keep_b = det.scores >= score_threshold, other.scores >= score_threshold
    frame_a, frame_b = det.frame[keep_a], other.frame[keep_b]
    boxes_a = det.boxes_xyxy[keep_a].astype(np.float64)
    boxes_b = other.boxes_xyxy[keep_b].astype(np.float64)
    labels_a, labels_b = det.labels[keep_a], other.labels[keep_b]
    count_a = np.bincount(frame_a, minlength=n_all)
    count_b = np.bincount(frame_b, minlength=n_all)
    matched = np.zeros(n_all, dtype=_INT)
    conflicts = np.zeros(n_all, dtype=_INT)
    if frame_a.size and frame_b.size:
        i, j = _pairs_by_group(frame_a, frame_b)
        iou = _pair_iou(boxes_a[i], boxes_b[j])
        candidate = (iou >= iou_threshold) & (iou > 0)
        i, j, iou = i[candidate], j[candidate], iou[candidate]
        keep = greedy_pairs(iou, i, j)
        i, j = i[keep], j[keep]
        matched += np.bincount(frame_a[i], minlength=n_all)
        conflicts += np.bincount(frame_a[i][labels_a[i] != labels_b[j]], minlength=n_all)
    only_a, only_b = count_a - matched, count_b - matched
    union = matched + only_a + only_b
    per_frame = np.zeros(n_all)
    np.divide(only_a + only_b + conflicts, union, out=per_frame, where=union > 0)
    starts = det.frame_start.tolist()
    frame_clip = np.repeat(np.arange(n_clips, dtype=_INT), det.n_frames)
    fired_frames = np.flatnonzero(per_frame >= fire_disagreement)
    fired = _split_sorted(
        frame_clip[fired_frames], fired_frames - det.frame_start[frame_clip[fired_frames]], n_clips
    )
    worst = np.zeros(n_clips)
    np.maximum.at(worst, frame_clip, per_frame)
    sums = [
        np.bincount(frame_clip, weights=w, minlength=n_clips).astype(_INT).tolist()
        for w in (matched, only_a, only_b, conflicts)
    ]
    worst_list = worst.tolist()
    results = []
    for c in range(n_clips):
        s, e = starts[c], starts[c + 1]
        # The clip's own slice: numpy's mean sums pairwise, so a grouped sum could differ in the last bit.
        score = float(per_frame[s:e].mean()) if e > s else 0.0
        details: dict[str, Any] = {
            "matched": sums[0][c],
            "unmatched": sums[1][c],
            "unmatched_other": sums[2][c],
            "class_conflicts": sums[3][c],
            "max_frame_disagreement": round(worst_list[c], 6),
        }
        frames = [int(indices[c][p]) for p in fired[c]]
        results.append(TriggerResult(score=unit(score), frames=frames, details=details))
    return results


@dataclass(frozen=True, slots=True)
class _Flat:
    """The :class:`FrameStats` of a chunk's clips concatenated: per frame, per transition, and per clip."""

    mean_luma: NDArray[np.float64]
    contrast: NDArray[np.float64]
    sharpness: NDArray[np.float64]
    frame_change: NDArray[np.float64]
    histogram_change: NDArray[np.float64]
    #: Per frame and per transition (between a clip's consecutive frames): its clip and its position.
    frame_clip: NDArray[np.int64]
    frame_position: NDArray[np.int64]
    step_clip: NDArray[np.int64]
    step_position: NDArray[np.int64]
    n_frames: list[int]


def _flatten(stats: Sequence[FrameStats]) -> _Flat:
    n = np.asarray([s.mean_luma.size for s in stats], dtype=_INT)
    steps = np.asarray([s.frame_change.size for s in stats], dtype=_INT)
    starts = np.concatenate([[0], np.cumsum(n)])[:-1]
    step_starts = np.concatenate([[0], np.cumsum(steps)])[:-1]
    clips = np.arange(len(stats), dtype=_INT)
    frame_clip, step_clip = np.repeat(clips, n), np.repeat(clips, steps)

    def cat(name: str) -> NDArray[np.float64]:
        parts = [getattr(s, name) for s in stats]
        return np.concatenate(parts).astype(np.float64, copy=False) if parts else np.zeros(0)

    return _Flat(
        mean_luma=cat("mean_luma"),
        contrast=cat("contrast"),
        sharpness=cat("sharpness"),
        frame_change=cat("frame_change"),
        histogram_change=cat("histogram_change"),
        frame_clip=frame_clip,
        frame_position=np.arange(frame_clip.size, dtype=_INT) - starts[frame_clip],
        step_clip=step_clip,
        step_position=np.arange(step_clip.size, dtype=_INT) - step_starts[step_clip],
        n_frames=n.tolist(),
    )


def _split(
    values: NDArray[np.float64], clip: NDArray[np.int64], n_clips: int, digits: int
) -> list[list[float]]:
    """Per clip, its (contiguous) run of ``values`` rounded to ``digits``, as a list (as
    :func:`~dataengine.triggers.image_signals.rounded` gives it for the clip alone)."""
    cuts = np.searchsorted(clip, np.arange(n_clips + 1)).tolist()
    flat: list[float] = np.round(values, digits).tolist()
    return [flat[cuts[c] : cuts[c + 1]] for c in range(n_clips)]


def _clip_max(
    values: NDArray[np.float64], clip: NDArray[np.int64], n_clips: int, initial: float
) -> list[float]:
    """Per clip, ``max(initial, its values)`` (a maximum does not depend on the order)."""
    out = np.full(n_clips, initial)
    np.maximum.at(out, clip, values)
    best: list[float] = out.tolist()
    return best


def _fired_positions(
    strength: NDArray[np.float64], clip: NDArray[np.int64], position: NDArray[np.int64], n_clips: int
) -> list[list[int]]:
    """Per clip, the positions (ascending) where ``strength`` reaches 0.5."""
    hit = strength >= 0.5
    return _split_sorted(clip[hit], position[hit], n_clips, unique=False)


def image_results_many(
    stats: Sequence[FrameStats], indices: Sequence[Sequence[int]]
) -> dict[str, list[TriggerResult]]:
    """:func:`brightness_score`, :func:`blur_score`, :func:`frozen_score` and :func:`scene_cut_score`
    (at their default parameters) of every clip of a chunk, by trigger name. Each clip's ``stats`` must
    have one value per frame of its ``indices``."""
    flat, n_clips = _flatten(stats), len(stats)
    fc, sc = flat.frame_clip, flat.step_clip
    # brightness (defaults: full-scale jump 64, dark 40, bright 215, flat contrast 12)
    mean = flat.mean_luma
    jumps = np.clip(np.abs(flat.mean_luma[1:] - flat.mean_luma[:-1]) / 64.0, 0.0, 1.0)
    same_clip = fc[1:] == fc[:-1] if fc.size else np.zeros(0, dtype=bool)
    jumps, jump_clip, jump_position = jumps[same_clip], fc[1:][same_clip], flat.frame_position[1:][same_clip]
    darkness = np.clip((40.0 - mean) / 30.0, 0.0, 1.0)
    glare = np.clip((mean - 215.0) / 30.0, 0.0, 1.0)
    flatness = np.clip((12.0 - flat.contrast) / 10.0, 0.0, 1.0)
    parts = {
        "jump": _clip_max(jumps, jump_clip, n_clips, 0.0),
        "dark": _clip_max(darkness, fc, n_clips, 0.0),
        "bright": _clip_max(glare, fc, n_clips, 0.0),
        "flat": _clip_max(flatness, fc, n_clips, 0.0),
    }
    level = np.maximum.reduce([darkness, glare, flatness])
    bright_frames = _split_sorted(
        np.concatenate([jump_clip[jumps >= 0.5], fc[level >= 0.5]]),
        np.concatenate([jump_position[jumps >= 0.5], flat.frame_position[level >= 0.5]]),
        n_clips,
    )
    mean_lists = _split(mean, fc, n_clips, 2)
    contrast_lists = _split(flat.contrast, fc, n_clips, 2)
    # blur (defaults: drop 0.35, floor 2)
    sharp = flat.sharpness
    best = np.zeros(n_clips)
    np.maximum.at(best, fc, sharp)
    best_of = best[fc]
    ratio = np.ones_like(sharp)
    np.divide(sharp, best_of, out=ratio, where=best_of > 0)
    relative = np.clip((0.8 - ratio) / (0.8 - 0.35), 0.0, 1.0)
    relative_max = _clip_max(relative, fc, n_clips, 0.0)
    min_ratio = np.full(n_clips, 1.0)
    np.minimum.at(min_ratio, fc, ratio)
    min_ratio_list, best_list = min_ratio.tolist(), best.tolist()
    blur_frames = _fired_positions(relative, fc, flat.frame_position, n_clips)
    sharp_lists = _split(sharp, fc, n_clips, 3)
    # frozen (defaults: still 0.5, relative 0.4), against each clip's typical change
    change = flat.frame_change
    typical = [
        s.typical_change
        if s.typical_change is not None
        else (float(np.median(s.frame_change)) if s.frame_change.size else 0.0)
        for s in stats
    ]
    cut = np.asarray([max(0.5, 0.4 * t) for t in typical])
    frozen = change < cut[sc]
    n_frozen = np.bincount(sc[frozen], minlength=n_clips).tolist()
    frozen_frames = _split_sorted(sc[frozen], flat.step_position[frozen] + 1, n_clips, unique=False)
    change_lists = _split(change, sc, n_clips, 3)
    # scene_cut (defaults: calm 0.15, full 0.5)
    strength = np.clip((flat.histogram_change - 0.15) / (0.5 - 0.15), 0.0, 1.0)
    cut_max = _clip_max(strength, sc, n_clips, 0.0)
    cut_frames = _fired_positions(strength, sc, flat.step_position + 1, n_clips)
    hist_lists = _split(flat.histogram_change, sc, n_clips, 4)

    out: dict[str, list[TriggerResult]] = {"brightness": [], "blur": [], "frozen": [], "scene_cut": []}
    for c in range(n_clips):
        at = indices[c]
        n = flat.n_frames[c]
        values = {name: part[c] for name, part in parts.items()}
        details: dict[str, Any] = {
            **{k: round(v, 6) for k, v in values.items()},
            "mean_luma": mean_lists[c],
            "contrast": contrast_lists[c],
        }
        out["brightness"].append(
            TriggerResult(
                score=unit(max(values.values(), default=0.0)),
                frames=sorted({int(at[p]) for p in bright_frames[c]}),
                details=details,
            )
        )
        top = best_list[c]
        absolute = unit((2.0 - top) / 2.0) if n else 0.0
        out["blur"].append(
            TriggerResult(
                score=unit(max(relative_max[c], absolute)),
                frames=[int(at[p]) for p in blur_frames[c]],
                details={
                    "sharpness": sharp_lists[c],
                    "min_ratio": round(min_ratio_list[c], 6),
                    "absolute": round(absolute, 6),
                },
            )
        )
        steps = max(n - 1, 0)
        share = n_frozen[c] / steps if steps else 0.0
        out["frozen"].append(
            TriggerResult(
                score=unit(2.0 * share),
                frames=[int(at[p]) for p in frozen_frames[c]],
                details={
                    "frozen_transitions": n_frozen[c],
                    "frame_change": change_lists[c],
                    "typical_change": round(typical[c], 3),
                },
            )
        )
        out["scene_cut"].append(
            TriggerResult(
                score=unit(cut_max[c]),
                frames=[int(at[p]) for p in cut_frames[c]],
                details={"histogram_change": hist_lists[c]},
            )
        )
    return out
