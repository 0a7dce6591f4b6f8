"""Weighted Boxes Fusion of several detectors' boxes on one frame (Solovyev et al., 2021).

Unlike NMS, which keeps one box of a cluster and drops the rest, WBF averages the cluster's coordinates
weighted by score and model weight, so agreeing models sharpen the box and a box that only some models
see loses confidence. Written here rather than taken from ``ensemble-boxes``: that package works in
normalised coordinates with one global threshold, and pulls in numba and pandas (docs/autolabel.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dataengine.vision.inference import Detections


@dataclass(frozen=True, slots=True)
class FusionParams:
    """WBF settings: one weight per model, the cluster IoU, and the score below which inputs are ignored."""

    weights: tuple[float, ...]
    iou_threshold: float = 0.55
    skip_score: float = 0.0

    def __post_init__(self) -> None:
        if not self.weights or any(w <= 0 or not np.isfinite(w) for w in self.weights):
            raise ValueError(f"model weights must be positive numbers, got {list(self.weights)}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {self.iou_threshold}")


def _iou(a: list[float], b: list[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _cluster(
    boxes: NDArray[np.float64],
    labels: NDArray[np.int64],
    member_weight: NDArray[np.float64],
    iou_threshold: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Greedy clusters: boxes, by descending weight, join the same-label fused box they overlap most if
    that IoU exceeds ``iou_threshold``; the fused box is the running weighted mean of its members.

    Returns each box's cluster number and the fused boxes. Plain Python floats: a frame holds tens of
    boxes, where numpy's per-call overhead costs more than the arithmetic.
    """
    box_list, label_list, weight_list = boxes.tolist(), labels.tolist(), member_weight.tolist()
    fused: list[list[float]] = []
    sums: list[list[float]] = []
    totals: list[float] = []
    fused_labels: list[int] = []
    cluster = [0] * len(box_list)
    for i in sorted(range(len(box_list)), key=lambda i: -weight_list[i]):
        box, weight = box_list[i], weight_list[i]
        best, best_iou = -1, iou_threshold
        for j, other in enumerate(fused):
            if fused_labels[j] == label_list[i]:
                overlap = _iou(box, other)
                if overlap > best_iou:
                    best, best_iou = j, overlap
        if best < 0:
            best = len(fused)
            fused.append(list(box))
            sums.append([0.0, 0.0, 0.0, 0.0])
            totals.append(0.0)
            fused_labels.append(label_list[i])
        cluster[i] = best
        totals[best] += weight
        sums[best] = [s + v * weight for s, v in zip(sums[best], box, strict=True)]
        fused[best] = [s / max(totals[best], 1e-12) for s in sums[best]]
    return np.asarray(cluster, dtype=np.int64), np.asarray(fused, dtype=np.float64).reshape(-1, 4)


def fuse_frame(per_model: Sequence[Detections], params: FusionParams) -> Detections:
    """The fused detections of one frame from each model's detections (``per_model[m]`` by model ``m``).

    Boxes of the same label whose IoU with a cluster's fused box exceeds ``iou_threshold`` join it. The
    fused box is the (score x weight)-weighted mean of the members; its score is the sum over models of
    each model's best member score times its weight, divided by the sum of all weights, so a box every
    model finds keeps its score and one model's lone box is discounted by that model's share.
    """
    if len(per_model) != len(params.weights):
        raise ValueError(f"{len(per_model)} detection sets for {len(params.weights)} model weights")
    boxes, scores, labels, models = _stack(per_model, params.skip_score)
    if scores.size == 0:
        return Detections.empty()
    weight = np.asarray(params.weights, dtype=np.float64)
    # Boxes are visited by descending score x model weight; ties in input order, so results are stable.
    cluster, fused = _cluster(boxes, labels, scores * weight[models], params.iou_threshold)
    best = np.zeros((fused.shape[0], weight.size), dtype=np.float64)
    np.maximum.at(best, (cluster, models), scores)
    fused_scores = (best * weight).sum(axis=1) / weight.sum()
    fused_labels = np.zeros(fused.shape[0], dtype=np.int64)
    fused_labels[cluster] = labels
    order = np.argsort(-fused_scores, kind="stable")
    return Detections(
        boxes_xyxy=fused[order].astype(np.float32),
        scores=fused_scores[order].astype(np.float32),
        labels=fused_labels[order],
    )


def _stack(
    per_model: Sequence[Detections], skip_score: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """All models' boxes at or above ``skip_score`` as flat arrays, with the model index of each."""
    kept = [d.above(skip_score) for d in per_model]
    boxes = np.concatenate([d.boxes_xyxy.reshape(-1, 4) for d in kept]).astype(np.float64)
    scores = np.concatenate([d.scores for d in kept]).astype(np.float64)
    labels = np.concatenate([d.labels for d in kept]).astype(np.int64)
    models = np.concatenate([np.full(len(d), m, dtype=np.int64) for m, d in enumerate(kept)])
    return boxes, scores, labels, models


def class_thresholds(
    classes: Sequence[str], per_class: Mapping[str, float], default: float
) -> NDArray[np.float64]:
    """The score threshold of each class index: ``per_class[name]`` where given, else ``default``."""
    unknown = sorted(set(per_class) - set(classes))
    if unknown:
        raise ValueError(f"class thresholds name unknown classes {unknown}; the classes are {list(classes)}")
    return np.asarray([per_class.get(name, default) for name in classes], dtype=np.float64)
