"""Autolabel quality: (a) one detector frame by frame, (b) the WBF ensemble, (c) the ensemble with tracking
and hindsight, on synthetic clips with ground truth, through the same detectors, in one run.

Reports mAP@0.5 and mAP@0.5:0.95 (pycocotools), MOTA, IDF1, ID switches and fragmentations (motmetrics),
and the reviewer's effort: 7 s per box to draw (a miss), 2 s per correction (delete, move or relabel).
(a) is the best single detector of the ensemble. (a) and (b) get track ids from the greedy IoU tracker
autolabel used before this pipeline.
Goal: (c) beats (a) by >= 5 mAP@0.5 points and has at most half its fragmentations.

    python -m benchmarks.autolabel_quality [--clips 6] [--frames 60] [--models 3] [--cache DIR]

Scenes: training 100-127 (benchmarks/autolabel_common.py), validation 150-151 (the WBF weights),
evaluation 200+; any change to the pipeline is tried on ``--first-clip 400`` first, never on 200+.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import motmetrics as mm
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from benchmarks.autolabel_common import CLASSES, RECIPES, Sample, render_clip, trained_detector
from dataengine.autolabel import IoUTracker, label_frames
from dataengine.autolabel.labelling import FrameSize
from dataengine.autolabel.pipeline import AutolabelParams, fuse, label_clip
from dataengine.formats import Box, Frame
from dataengine.training.evaluation import coco_map
from dataengine.vision import Detections, Detector
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


def coco_scores(clips: Sequence[Sequence[Frame]], truths: Sequence[Sequence[list[Box]]]) -> dict[str, float]:
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


def sizes_of(samples: Sequence[Sample]) -> list[FrameSize]:
    return [FrameSize(s.index, s.rgb.shape[1], s.rgb.shape[0]) for s in samples]


def pipeline_a(
    detections: list[Detections], samples: Sequence[Sample], params: AutolabelParams
) -> list[Frame]:
    """One detector, frame by frame, thresholded; ids from the greedy IoU tracker."""
    thresholds = params.thresholds
    kept = [
        Detections(d.boxes_xyxy[m], d.scores[m], d.labels[m])
        for d in detections
        for m in [d.scores >= thresholds[d.labels]]
    ]
    return label_frames(kept, sizes_of(samples), classes=CLASSES, tracker=IoUTracker())


def pipeline_b(
    raw: list[list[Detections]], samples: Sequence[Sample], params: AutolabelParams
) -> list[Frame]:
    """The WBF ensemble, frame by frame, thresholded; ids from the greedy IoU tracker."""
    thresholds = params.thresholds
    fused = [fuse([model[i] for model in raw], params) for i in range(len(samples))]
    kept = [
        Detections(d.boxes_xyxy[m], d.scores[m], d.labels[m])
        for d in fused
        for m in [d.scores >= thresholds[d.labels]]
    ]
    frames = label_frames(kept, sizes_of(samples), classes=CLASSES, tracker=IoUTracker())
    return [Frame(f.index, f.image, f.width, f.height, [_as_ensemble(b) for b in f.boxes]) for f in frames]


def _as_ensemble(box: Box) -> Box:
    return Box(box.label, box.xyxy, box.track, box.score, "ensemble")


def pipeline_c(
    raw: list[list[Detections]], samples: Sequence[Sample], params: AutolabelParams
) -> list[Frame]:
    """The ensemble with tracking and hindsight: what ``autolabel`` writes."""
    fused = [fuse([model[i] for model in raw], params) for i in range(len(samples))]
    return label_clip(fused, sizes_of(samples), params, n_models=len(raw))


#: The score thresholds each pipeline's operating point is chosen from, on the validation clips.
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: Validation scenes: they set the WBF weights and the thresholds, and are never evaluated on.
VALIDATION_SCENES = (150, 151)


def label(
    name: str, raw: list[list[Detections]], samples: Sequence[Sample], params: AutolabelParams
) -> list[Frame]:
    """Pipeline ``name`` (``a1``.. one model, ``b`` or ``c``) on one clip's raw detections."""
    if name == "b":
        return pipeline_b(raw, samples, params)
    if name == "c":
        return pipeline_c(raw, samples, params)
    return pipeline_a(raw[int(name[1:]) - 1], samples, params)


def total_effort(labelled: Sequence[Sequence[Frame]], truths: Sequence[Sequence[list[Box]]]) -> Effort:
    """The reviewer's effort summed over clips."""
    effort = Effort()
    for labelled_frames, truth in zip(labelled, truths, strict=True):
        e = review_effort(labelled_frames, truth)
        effort.draws, effort.deletes = effort.draws + e.draws, effort.deletes + e.deletes
        effort.moves, effort.relabels = effort.moves + e.moves, effort.relabels + e.relabels
    return effort


def validation_params(
    detectors: Sequence[Detector], weights: Sequence[float] | None
) -> dict[str, AutolabelParams]:
    """Each pipeline's parameters, set on the validation clips (never the evaluation clips).

    The WBF weights (unless given) are proportional to each model's mAP@0.5 there, as one would set
    ``autolabel_model_weights`` from the models' held-out metrics. Then every pipeline, the single
    models included, gets the score threshold of :data:`THRESHOLDS` that costs the reviewer least on
    those clips: a WBF score is discounted by the share of the models that missed the box, so the fused
    scores sit lower than one model's and the same threshold would not be the same operating point.
    """
    clips = [render_clip(seed, 40) for seed in VALIDATION_SCENES]
    truths = [[s.boxes for s in samples] for samples in clips]
    raws = [[d.predict([s.rgb for s in c], batch_size=8) for d in detectors] for c in clips]
    single = AutolabelParams(classes=tuple(CLASSES), weights=(1.0,))
    if not weights:
        maps = [
            max(
                coco_scores(
                    [pipeline_a(raw[m], c, single) for raw, c in zip(raws, clips, strict=True)], truths
                )["map50"],
                0.01,
            )
            for m in range(len(detectors))
        ]
        weights = [w / max(maps) for w in maps]
    chosen: dict[str, AutolabelParams] = {}
    for name in [*(f"a{m + 1}" for m in range(len(detectors))), "b", "c"]:
        base = (
            single
            if name.startswith("a")
            else AutolabelParams(classes=tuple(CLASSES), weights=tuple(weights))
        )
        candidates = [replace(base, score_threshold=t) for t in THRESHOLDS]
        seconds = [
            total_effort([label(name, raw, c, p) for raw, c in zip(raws, clips, strict=True)], truths).seconds
            for p in candidates
        ]
        chosen[name] = candidates[int(np.argmin(seconds))]
    return chosen


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    torch.set_num_threads(2)
    detectors: list[Detector] = [trained_detector(r, args.cache)[0] for r in RECIPES[: args.models]]
    clips = [render_clip(args.first_clip + i, args.frames) for i in range(args.clips)]
    params = validation_params(detectors, args.weights)
    if args.threshold is not None:
        params = {name: replace(p, score_threshold=args.threshold) for name, p in params.items()}
    print(f"ensemble weights: {', '.join(f'{w:.3f}' for w in params['c'].weights)}")
    print("score thresholds: " + ", ".join(f"{name} {p.score_threshold:.1f}" for name, p in params.items()))
    singles = [f"a{m + 1}" for m in range(len(detectors))]
    outputs: dict[str, list[list[Frame]]] = {name: [] for name in [*singles, "b", "c"]}
    for samples in clips:
        raw = [d.predict([s.rgb for s in samples], batch_size=8) for d in detectors]
        for name in outputs:
            outputs[name].append(label(name, raw, samples, params[name]))
    truths = [[s.boxes for s in samples] for samples in clips]
    table: dict[str, dict[str, float]] = {}
    for name, labelled in outputs.items():
        effort = total_effort(labelled, truths)
        coco = coco_scores(labelled, truths)
        table[name] = {
            "mAP@0.5": 100 * coco["map50"],
            "mAP@0.5:0.95": 100 * coco["map"],
            **mot_scores(labelled, truths),
            "review minutes": effort.seconds / 60,
            "boxes to draw": effort.draws,
            "corrections": effort.deletes + effort.moves + effort.relabels,
        }
    # (a) is the best single detector by mAP@0.5: the ensemble has to beat the strongest member.
    table["a"] = max((table[name] for name in singles), key=lambda row: row["mAP@0.5"])
    n_truth = sum(len(gt) for truth in truths for gt in truth)
    table["scratch"] = {"review minutes": DRAW_SECONDS * n_truth / 60, "boxes to draw": n_truth}
    return table


def print_table(table: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"autolabel quality: {args.clips} synthetic clips x {args.frames} frames, {args.models} tiny "
        "detectors "
        "trained here; (a) one detector, (b) WBF ensemble, (c) ensemble + tracking + hindsight"
    )
    print(f"{'metric':<18} {'(a)':>9} {'(b)':>9} {'(c)':>9} {'c/a':>7}  better")
    higher = {"mAP@0.5", "mAP@0.5:0.95", "mota", "idf1"}
    for metric in table["a"]:
        a, b, c = (table[k][metric] for k in "abc")
        ratio = c / a if a else float("inf")
        print(
            f"{metric:<18} {a:>9.3f} {b:>9.3f} {c:>9.3f} {ratio:>7.2f}  "
            f"{'higher' if metric in higher else 'lower'}"
        )
    singles = ", ".join(f"{k}={v['mAP@0.5']:.1f}" for k, v in table.items() if k[0] == "a" and k != "a")
    print(f"single detectors' mAP@0.5: {singles}; (a) is the best of them")
    print(f"drawing every box from scratch: {table['scratch']['review minutes']:.1f} review minutes")
    gain = table["c"]["mAP@0.5"] - table["a"]["mAP@0.5"]
    frag_a, frag_c = table["a"]["num_fragmentations"], table["c"]["num_fragmentations"]
    print(
        f"goal mAP@0.5 (c) - (a) >= 5 points: {gain:+.1f} -> {'met' if gain >= 5 else 'NOT met'}; "
        f"fragmentations (c) <= (a) / 2: {frag_c:.0f} vs {frag_a:.0f} -> "
        f"{'met' if frag_c <= frag_a / 2 else 'NOT met'}"
    )


def rows() -> list[tuple[str, float, float, str]]:
    """The summary row of ``python -m benchmarks``: mAP@0.5 of (c) against (a), default arguments."""
    table = run(_parser().parse_args([]))
    return [
        (
            "autolabel mAP@0.5, ensemble+tracking+hindsight",
            table["c"]["mAP@0.5"],
            table["a"]["mAP@0.5"],
            "one detector frame by frame",
        )
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autolabel_quality", description=__doc__)
    parser.add_argument("--clips", type=int, default=6, help="synthetic evaluation clips")
    parser.add_argument("--frames", type=int, default=60, help="frames per evaluation clip")
    parser.add_argument(
        "--first-clip",
        type=int,
        default=200,
        help="scene seed of the first evaluation clip (200: the reported split; 400: for development)",
    )
    parser.add_argument("--models", type=int, default=3, choices=(1, 2, 3), help="detectors in the ensemble")
    parser.add_argument(
        "--weights", type=float, nargs="+", help="WBF weights (default: from mAP@0.5 on validation clips)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="one score threshold for every pipeline (default: each pipeline's, chosen on validation clips)",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(".dataengine/bench-cache"), help="where trained detectors are kept"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    table = run(args)
    print_table(table, args)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
