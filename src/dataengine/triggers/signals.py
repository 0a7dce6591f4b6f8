"""The math of the built-in triggers, on plain detections and frames (no model, no storage)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dataengine.triggers.base import TriggerResult
from dataengine.vision.boxes import greedy_match, same_label_iou
from dataengine.vision.inference import Detections

#: Rec. 601 luma weights of R, G, B.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _n_matched(a: Detections, b: Detections, *, iou_threshold: float) -> int:
    """How many detections of ``a`` and ``b`` pair up (same label, IoU >= threshold, one-to-one)."""
    if len(a) == 0 or len(b) == 0:
        return 0
    iou = same_label_iou(a.boxes_xyxy, a.labels, b.boxes_xyxy, b.labels)
    rows, _ = greedy_match(iou, iou_threshold=iou_threshold)
    return int(rows.size)


def _check_lengths(frame_indices: Sequence[int], *per_frame: Sequence[object]) -> None:
    for values in per_frame:
        if len(values) != len(frame_indices):
            raise ValueError(f"{len(values)} per-frame values for {len(frame_indices)} frames")


def flicker_score(
    detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    iou_threshold: float = 0.3,
    fire_churn: float = 0.5,
) -> TriggerResult:
    """How unstable one detector's output is from one sampled frame to the next.

    Each pair of consecutive frames gets a churn of 1 - Jaccard index of their detection sets (detections
    pair up when they share a label and overlap by ``iou_threshold``): 0 when every object is found again,
    1 when none is. The score is the mean churn; objects that vanish and come back, and jumps of the
    detection count, both raise it. ``frames`` are the later frames of pairs with churn >= ``fire_churn``.
    """
    _check_lengths(frame_indices, detections)
    churns: list[float] = []
    fired: list[int] = []
    vanished = appeared = 0
    for t in range(1, len(detections)):
        previous, current = detections[t - 1], detections[t]
        matched = _n_matched(previous, current, iou_threshold=iou_threshold)
        union = len(previous) + len(current) - matched
        churn = 1.0 - matched / union if union else 0.0
        vanished += len(previous) - matched
        appeared += len(current) - matched
        churns.append(churn)
        if churn >= fire_churn:
            fired.append(int(frame_indices[t]))
    score = float(np.mean(churns)) if churns else 0.0
    details = {
        "mean_churn": round(score, 6),
        "max_churn": round(max(churns, default=0.0), 6),
        "vanished": vanished,
        "appeared": appeared,
        "reappeared": _count_reappeared(detections, iou_threshold=iou_threshold),
        "detections_per_frame": [len(d) for d in detections],
    }
    return TriggerResult(score=min(1.0, max(0.0, score)), frames=fired, details=details)


def _count_reappeared(detections: Sequence[Detections], *, iou_threshold: float) -> int:
    """Objects seen at t-1, missing at t and seen again at t+1: the signature of an unsure detector."""
    count = 0
    for t in range(1, len(detections) - 1):
        before, now, after = detections[t - 1], detections[t], detections[t + 1]
        if len(before) == 0 or len(after) == 0:
            continue
        lost = np.ones(len(before), dtype=bool)
        if len(now):
            rows, _ = greedy_match(
                same_label_iou(before.boxes_xyxy, before.labels, now.boxes_xyxy, now.labels),
                iou_threshold=iou_threshold,
            )
            lost[rows] = False
        if lost.any():
            iou = same_label_iou(before.boxes_xyxy[lost], before.labels[lost], after.boxes_xyxy, after.labels)
            rows, _ = greedy_match(iou, iou_threshold=iou_threshold)
            count += int(rows.size)
    return count


def frame_f1(a: Detections, b: Detections, *, iou_threshold: float = 0.5) -> float:
    """F1 of two detection sets against each other (same label, IoU >= threshold); 1 when both are empty."""
    if len(a) + len(b) == 0:
        return 1.0
    return 2.0 * _n_matched(a, b, iou_threshold=iou_threshold) / (len(a) + len(b))


def disagreement_score(
    detections: Sequence[Detections],
    other_detections: Sequence[Detections],
    frame_indices: Sequence[int],
    *,
    iou_threshold: float = 0.5,
    fire_disagreement: float = 0.5,
) -> TriggerResult:
    """1 - the mean over frames of the matched F1 between two models' detections.

    0 when both models find the same boxes (or both find nothing), 1 when they never agree. ``frames``
    are those where 1 - F1 >= ``fire_disagreement``.
    """
    _check_lengths(frame_indices, detections, other_detections)
    f1s = [
        frame_f1(a, b, iou_threshold=iou_threshold) for a, b in zip(detections, other_detections, strict=True)
    ]
    mean_f1 = float(np.mean(f1s)) if f1s else 1.0
    fired = [int(i) for i, f1 in zip(frame_indices, f1s, strict=True) if 1.0 - f1 >= fire_disagreement]
    details = {
        "mean_f1": round(mean_f1, 6),
        "min_f1": round(min(f1s, default=1.0), 6),
        "boxes": sum(len(d) for d in detections),
        "other_boxes": sum(len(d) for d in other_detections),
    }
    return TriggerResult(score=min(1.0, max(0.0, 1.0 - mean_f1)), frames=fired, details=details)


def mean_luma(rgb: NDArray[np.uint8]) -> float:
    """Mean Rec. 601 luma of an RGB ``uint8`` frame, in [0, 255]."""
    channel_means = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3).mean(axis=0, dtype=np.float64)
    return float(channel_means @ _LUMA_WEIGHTS)


def brightness_change_score(
    frames: Sequence[NDArray[np.uint8]],
    frame_indices: Sequence[int],
    *,
    full_scale_luma: float = 64.0,
    fire_fraction: float = 0.5,
) -> TriggerResult:
    """The largest change of mean luma between consecutive sampled frames, over ``full_scale_luma``.

    A jump of ``full_scale_luma`` levels (of 255) or more scores 1: a light switched on or off, a door
    opened into sunlight. ``frames`` are the later frames of jumps of at least ``fire_fraction`` of it.
    """
    _check_lengths(frame_indices, frames)
    lumas = np.array([mean_luma(frame) for frame in frames], dtype=np.float64)
    deltas = np.abs(np.diff(lumas))
    largest = float(deltas.max()) if deltas.size else 0.0
    fired = [
        int(frame_indices[int(t) + 1]) for t in np.flatnonzero(deltas >= fire_fraction * full_scale_luma)
    ]
    details = {
        "max_luma_change": round(largest, 3),
        "mean_luma": [round(float(v), 3) for v in lumas],
        "full_scale_luma": full_scale_luma,
    }
    return TriggerResult(score=min(1.0, largest / full_scale_luma), frames=fired, details=details)
