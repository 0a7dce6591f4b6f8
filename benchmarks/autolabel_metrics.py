"""Review effort, COCO mAP and MOT metrics of labelled synthetic clips against their ground truth.

The reviewer's effort is 7 s per box to draw (a miss) and 2 s per correction (delete, move or relabel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from benchmarks.autolabel_common import CLASSES
from dataengine.formats import Box, Frame
from dataengine.training.evaluation import coco_map
from dataengine.vision.boxes import pairwise_iou

DRAW_SECONDS, FIX_SECONDS = 7.0, 2.0
#: A matched box further than this from the truth (IoU below) is one the reviewer moves.
MOVE_IOU = 0.85


@dataclass
class Effort:
    """What a reviewer does to the labels of a set of frames."""

    draws: int = 0
    deletes: int = 0
    moves: int = 0
    relabels: int = 0

    @property
    def seconds(self) -> float:
        return DRAW_SECONDS * self.draws + FIX_SECONDS * (self.deletes + self.moves + self.relabels)


def review_effort(frames: Sequence[Frame], truth: Sequence[list[Box]]) -> Effort:
    """Boxes to draw, delete, move or relabel so the frames equal the truth (one-to-one at IoU >= 0.5)."""
    effort = Effort()
    for frame, gt in zip(frames, truth, strict=True):
        iou = pairwise_iou(np.array([b.xyxy for b in gt]), np.array([b.xyxy for b in frame.boxes]))
        rows, cols = linear_sum_assignment(-iou) if iou.size else (np.zeros(0, int), np.zeros(0, int))
        pairs = [(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True) if iou[r, c] >= 0.5]
        effort.draws += len(gt) - len(pairs)
        effort.deletes += len(frame.boxes) - len(pairs)
        effort.moves += sum(1 for r, c in pairs if iou[r, c] < MOVE_IOU)
        effort.relabels += sum(1 for r, c in pairs if gt[r].label != frame.boxes[c].label)
    return effort


def _xywh(box: Sequence[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def coco_scores(clips: Sequence[Sequence[Frame]], truths: Sequence[Sequence[list[Box]]]) -> dict[str, Any]:
    """mAP over every frame of every clip, with the boxes' scores as confidences."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for frames, truth in zip(clips, truths, strict=True):
        for frame, gt in zip(frames, truth, strict=True):
            image_id = len(images) + 1
            images.append({"id": image_id, "width": frame.width, "height": frame.height})
            for box in gt:
                x, y, w, h = _xywh(box.xyxy)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CLASSES.index(box.label) + 1,
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
            results += [
                {
                    "image_id": image_id,
                    "category_id": CLASSES.index(box.label) + 1,
                    "bbox": _xywh(box.xyxy),
                    "score": float(box.score if box.score is not None else 1.0),
                }
                for box in frame.boxes
            ]
    coco_gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)],
    }
    return coco_map(coco_gt, results)


def mot_scores(clips: Sequence[Sequence[Frame]], truths: Sequence[Sequence[list[Box]]]) -> dict[str, float]:
    """MOTA, IDF1, ID switches and fragmentations over all clips (motmetrics, IoU >= 0.5)."""
    accumulators = []
    for frames, truth in zip(clips, truths, strict=True):
        acc = mm.MOTAccumulator(auto_id=True)
        for frame, gt in zip(frames, truth, strict=True):
            # motmetrics' own iou_matrix calls np.asfarray, which numpy 2 removed: the same distances here.
            iou = pairwise_iou(np.array([b.xyxy for b in gt]), np.array([b.xyxy for b in frame.boxes]))
            distances = np.where(iou >= 0.5, 1.0 - iou, np.nan)
            acc.update([b.track for b in gt], [b.track for b in frame.boxes], distances)
        accumulators.append(acc)
    metrics = ["mota", "idf1", "num_switches", "num_fragmentations"]
    summary = mm.metrics.create().compute_many(accumulators, metrics=metrics, generate_overall=True)
    overall = summary.loc["OVERALL"]
    return {name: float(overall[name]) for name in metrics}


def total_effort(labelled: Sequence[Sequence[Frame]], truths: Sequence[Sequence[list[Box]]]) -> Effort:
    """The reviewer's effort summed over clips."""
    effort = Effort()
    for labelled_frames, truth in zip(labelled, truths, strict=True):
        e = review_effort(labelled_frames, truth)
        effort.draws, effort.deletes = effort.draws + e.draws, effort.deletes + e.deletes
        effort.moves, effort.relabels = effort.moves + e.moves, effort.relabels + e.relabels
    return effort
