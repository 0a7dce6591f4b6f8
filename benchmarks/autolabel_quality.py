"""Autolabel quality under the robustness protocol: does the ensemble beat its members on scenes nobody
tuned on, for every training seed and every evaluation range?

Each cell is one training seed set (three detectors trained here, benchmarks/autolabel_common.py) and one
evaluation range of scenes. Everything the pipeline chooses is chosen on the validation scenes only:
which members are dropped and each kept member's weight per class (from its validation mAP@0.5 and
per-class AP, as ``autolabel`` does from held-out metrics), each pipeline's score threshold (the one
that costs the reviewer least there), and "the best member" (best validation mAP@0.5, not the best on
the evaluation scenes). Then, on the evaluation scenes:

- (a) the validation-best member, frame by frame, ids from the greedy IoU tracker;
- mean: the mean mAP@0.5 of the three members, frame by frame;
- (b) the WBF ensemble of the kept members, frame by frame;
- (c) the ensemble with tracking and hindsight: what ``autolabel`` writes.

Targets per cell: (c) >= (a) - 1 and >= mean + 5 mAP@0.5 points; boxes to draw (c) <= (a); fragmentations
(c) <= (a) / 2; review minutes (c) <= 0.6 (a) and <= drawing from scratch / 8.

    python -m benchmarks.autolabel_quality [--seeds 0 1 2] [--ranges 1000 2000 3000] [--clips 6]

Scenes: training 100-127, validation 150-153, development 400+ (``--ranges 400``: where changes are
tried), evaluation 1000-1005, 2000-2005 and 3000-3005 (never used for development). Trained detectors
and their detections are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.autolabel_common import CLASSES, Recipe, Sample, recipes, render_clip, trained_detector
from benchmarks.autolabel_metrics import DRAW_SECONDS, coco_scores, mot_scores, total_effort
from benchmarks.iou_tracker import IoUTracker, label_frames
from dataengine.autolabel.ensemble import CONF_TYPES, DEFAULT_CONF_TYPE
from dataengine.autolabel.labelling import FrameSize
from dataengine.autolabel.members import (
    DROP_MARGIN,
    EnsemblePlan,
    MemberQuality,
    plan_ensemble,
    quality_from_metrics,
)
from dataengine.autolabel.pipeline import AutolabelParams, fuse, label_clip, strongest_view
from dataengine.formats import Box, Frame
from dataengine.vision import Detections, Detector

#: Validation scenes: member weights, dropping, thresholds and "the best member" come from them only.
VALIDATION_SCENES = (150, 151, 152, 153)
VALIDATION_FRAMES = 60
#: The first scene of each evaluation range (``--clips`` scenes from there).
EVALUATION_RANGES = (1000, 2000, 3000)
#: The score thresholds each pipeline's operating point is chosen from, on the validation clips.
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: The floor of the detections a member's validation quality is measured on.
QUALITY_FLOOR = 0.05


@dataclass(frozen=True, slots=True)
class Clip:
    """A rendered clip and every member's detections of it (``raw[m][frame]``)."""

    samples: list[Sample]
    raw: list[list[Detections]]

    @property
    def truth(self) -> list[list[Box]]:
        return [s.boxes for s in self.samples]

    @property
    def sizes(self) -> list[FrameSize]:
        return [FrameSize(s.index, s.rgb.shape[1], s.rgb.shape[0]) for s in self.samples]


def _detections(
    detector: Detector, recipe: Recipe, scene: int, samples: Sequence[Sample], cache: Path
) -> list[Detections]:
    """The detector's output on a clip (score >= 0.05), from ``cache`` when computed before."""
    path = cache / "detections" / f"{recipe.name}-{recipe.key()}-{scene}-{len(samples)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            ends = np.cumsum([0, *data["counts"].tolist()]).tolist()
            return [
                Detections(data["boxes"][a:b], data["scores"][a:b], data["labels"][a:b])
                for a, b in itertools.pairwise(ends)
            ]
    found = [d.above(QUALITY_FLOOR) for d in detector.predict([s.rgb for s in samples], batch_size=8)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        counts=np.asarray([len(d) for d in found], dtype=np.int64),
        boxes=np.concatenate([d.boxes_xyxy.reshape(-1, 4) for d in found]).astype(np.float32),
        scores=np.concatenate([d.scores for d in found]).astype(np.float32),
        labels=np.concatenate([d.labels for d in found]).astype(np.int64),
    )
    tmp.replace(path)
    return found


def load_clips(
    members: Sequence[tuple[Recipe, Detector]], scenes: Sequence[int], n_frames: int, cache: Path
) -> list[Clip]:
    """The clips of ``scenes`` with every member's detections."""
    clips = []
    for scene in scenes:
        samples = render_clip(scene, n_frames)
        clips.append(Clip(samples, [_detections(d, r, scene, samples, cache) for r, d in members]))
    return clips


def single(raw: Sequence[Detections], clip: Clip, threshold: float) -> list[Frame]:
    """One member frame by frame, thresholded; ids from the greedy IoU tracker."""
    kept = [d.above(threshold) for d in raw]
    return label_frames(kept, clip.sizes, classes=CLASSES, tracker=IoUTracker())


def wbf_only(clip: Clip, plan: Ensemble, threshold: float) -> list[Frame]:
    """(b): the kept members' WBF frame by frame, thresholded; ids from the greedy IoU tracker."""
    params = plan.params
    fused = [fuse([clip.raw[m][i] for m in plan.members], params) for i in range(len(clip.samples))]
    return label_frames(
        [d.above(threshold) for d in fused], clip.sizes, classes=CLASSES, tracker=IoUTracker()
    )


def full(clip: Clip, plan: Ensemble, threshold: float) -> list[Frame]:
    """(c): the kept members fused, tracked, with hindsight and recovery: what ``autolabel`` writes."""
    params = replace(plan.params, score_threshold=threshold)
    per_frame = [[clip.raw[m][i] for m in plan.members] for i in range(len(clip.samples))]
    fused = [fuse(dets, params) for dets in per_frame]
    strong = [strongest_view(dets, params) for dets in per_frame] if len(plan.members) > 1 else None
    return label_clip(fused, clip.sizes, params, n_models=len(plan.members), strong=strong)


@dataclass(frozen=True, slots=True)
class Ensemble:
    """The validation's choices: kept member indices, their parameters, and the plan behind them."""

    members: tuple[int, ...]
    params: AutolabelParams
    plan: EnsemblePlan


def _as_frame(sample: Sample, detections: Detections) -> Frame:
    boxes = [
        Box(CLASSES[label], (x1, y1, x2, y2), None, score)
        for (x1, y1, x2, y2), score, label in zip(
            detections.boxes_xyxy.tolist(),
            detections.scores.tolist(),
            detections.labels.tolist(),
            strict=True,
        )
    ]
    return Frame(sample.index, "", sample.rgb.shape[1], sample.rgb.shape[0], boxes)


def member_quality(name: str, clips: Sequence[Clip], m: int) -> MemberQuality:
    """Member ``m``'s mAP@0.5 and per-class AP on the validation clips (boxes >= 0.05, no tracking)."""
    frames = [[_as_frame(s, d) for s, d in zip(c.samples, c.raw[m], strict=True)] for c in clips]
    scores = coco_scores(frames, [c.truth for c in clips])
    # The same reading of an evaluation that autolabel applies to a model's held-out metrics.
    quality = quality_from_metrics(name, {"eval": scores, "held_out": "validation 150-153"})
    return quality if quality is not None else MemberQuality(name, 0.0, {}, "validation 150-153")


def choose(
    names: Sequence[str], clips: Sequence[Clip], args: argparse.Namespace
) -> tuple[list[MemberQuality], Ensemble, dict[str, float]]:
    """Everything chosen on validation: member quality, the ensemble, each pipeline's threshold."""
    quality = [member_quality(name, clips, m) for m, name in enumerate(names)]
    plan = plan_ensemble(quality, CLASSES, drop_margin=args.drop_margin)
    members = tuple(names.index(model_id) for model_id in plan.model_ids)
    params = AutolabelParams(
        classes=tuple(CLASSES),
        weights=(1.0,) * len(members),
        class_weights=dict(plan.class_weights) if len(members) > 1 else {},
        conf_type=args.conf_type,
        strong_start=args.strong_start,
    )
    ensemble = Ensemble(members, params, plan)
    truths = [c.truth for c in clips]
    pipelines: dict[str, Any] = {
        **{f"a{m + 1}": (lambda c, t, m=m: single(c.raw[m], c, t)) for m in range(len(names))},
        "b": lambda c, t: wbf_only(c, ensemble, t),
        "c": lambda c, t: full(c, ensemble, t),
    }
    thresholds = {
        name: min(THRESHOLDS, key=lambda t: total_effort([run(c, t) for c in clips], truths).seconds)
        for name, run in pipelines.items()
    }
    return quality, ensemble, thresholds


def measure(labelled: Sequence[Sequence[Frame]], clips: Sequence[Clip]) -> dict[str, float]:
    """mAP, MOT metrics and the reviewer's effort of one pipeline's labels over the clips."""
    truths = [c.truth for c in clips]
    effort = total_effort(labelled, truths)
    coco = coco_scores(labelled, truths)
    return {
        "map50": 100 * (coco["map50"] or 0.0),
        "map": 100 * (coco["map"] or 0.0),
        **mot_scores(labelled, truths),
        "minutes": effort.seconds / 60,
        "draws": effort.draws,
        "corrections": effort.deletes + effort.moves + effort.relabels,
    }


def run_cell(
    names: Sequence[str], ensemble: Ensemble, thresholds: dict[str, float], clips: Sequence[Clip], best: int
) -> dict[str, Any]:
    """One seed set x one evaluation range: every pipeline measured, and the targets checked."""
    rows = {
        f"a{m + 1}": measure([single(c.raw[m], c, thresholds[f"a{m + 1}"]) for c in clips], clips)
        for m in range(len(names))
    }
    rows["b"] = measure([wbf_only(c, ensemble, thresholds["b"]) for c in clips], clips)
    rows["c"] = measure([full(c, ensemble, thresholds["c"]) for c in clips], clips)
    a, c = rows[f"a{best + 1}"], rows["c"]
    mean = statistics.fmean(rows[f"a{m + 1}"]["map50"] for m in range(len(names)))
    scratch = DRAW_SECONDS * sum(len(gt) for clip in clips for gt in clip.truth) / 60
    checks = {
        "c >= a - 1": c["map50"] >= a["map50"] - 1,
        "c >= mean + 5": c["map50"] >= mean + 5,
        "draws c <= a": c["draws"] <= a["draws"],
        "frag c <= a/2": c["num_fragmentations"] <= a["num_fragmentations"] / 2,
        "minutes c <= 0.6 a": c["minutes"] <= 0.6 * a["minutes"],
        "minutes c <= scratch/8": c["minutes"] <= scratch / 8,
    }
    return {"rows": rows, "a": a, "c": c, "mean": mean, "scratch": scratch, "checks": checks}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every cell of the protocol: ``args.seeds`` x ``args.ranges``."""
    torch.set_num_threads(2)
    cells = []
    for seed_set in args.seeds:
        members = [(r, trained_detector(r, args.cache)[0]) for r in recipes(seed_set)]
        names = [r.name for r, _ in members]
        validation = load_clips(members, VALIDATION_SCENES, VALIDATION_FRAMES, args.cache)
        quality, ensemble, thresholds = choose(names, validation, args)
        best = max(range(len(names)), key=lambda m: quality[m].map50)
        for first in args.ranges:
            clips = load_clips(members, range(first, first + args.clips), args.frames, args.cache)
            cell = run_cell(names, ensemble, thresholds, clips, best)
            cell.update(seed_set=seed_set, first=first, names=names, best=best, quality=quality)
            cell.update(ensemble=ensemble, thresholds=thresholds)
            cells.append(cell)
            print_cell(cell, args.clips)
    return cells


def print_cell(cell: dict[str, Any], n_clips: int) -> None:
    """One cell's choices, members, pipelines and target checks."""
    first, ensemble = cell["first"], cell["ensemble"]
    print(f"\nseed set {cell['seed_set']}, scenes {first}-{first + n_clips - 1}")
    valid = ", ".join(f"{q.model_id} {100 * q.map50:.1f}" for q in cell["quality"])
    dropped = dict(ensemble.plan.dropped) or "none"
    print(f"  validation mAP@0.5: {valid}; best {cell['names'][cell['best']]}; dropped {dropped}")
    weights = "; ".join(f"{k} {list(v)}" for k, v in ensemble.plan.class_weights.items())
    print(f"  class weights of {list(ensemble.plan.model_ids)}: {weights}")
    print("  thresholds: " + ", ".join(f"{k} {v:.1f}" for k, v in cell["thresholds"].items()))
    columns = ("mAP@.5", "mAP", "MOTA", "IDF1", "frag", "draws", "fixes", "min")
    print(f"  {'pipeline':<8} " + " ".join(f"{c:>6}" for c in columns))
    for name, row in cell["rows"].items():
        print(
            f"  {name:<8} {row['map50']:>6.1f} {row['map']:>6.1f} {row['mota']:>6.2f} {row['idf1']:>6.2f} "
            f"{row['num_fragmentations']:>6.0f} {row['draws']:>6.0f} {row['corrections']:>6.0f} "
            f"{row['minutes']:>6.1f}"
        )
    a, c = cell["a"], cell["c"]
    print(
        f"  (c)-(a) {c['map50'] - a['map50']:+.1f}, (c)-mean {c['map50'] - cell['mean']:+.1f}, "
        f"scratch {cell['scratch']:.1f} min; "
        + ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in cell["checks"].items())
    )


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):+.1f} / {statistics.median(values):+.1f} / {max(values):+.1f}"


def print_summary(cells: Sequence[dict[str, Any]], n_clips: int) -> None:
    """The protocol's table (markdown, for docs/performance.md) and the spread over cells."""
    print(
        "\n| seed set | scenes | members (validation-best *) | (a) | mean | (b) | (c) | (c)-(a) | (c)-mean "
        "| boxes to draw a → c | fragmentations a → c | review min a → c (scratch) | targets missed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in cells:
        rows, a, c = cell["rows"], cell["a"], cell["c"]
        singles = " / ".join(
            f"{rows[f'a{m + 1}']['map50']:.1f}{'*' if m == cell['best'] else ''}"
            + (" (dropped)" if cell["names"][m] in cell["ensemble"].plan.dropped else "")
            for m in range(len(cell["names"]))
        )
        missed = ", ".join(k for k, ok in cell["checks"].items() if not ok) or "none"
        print(
            f"| {cell['seed_set']} | {cell['first']}-{cell['first'] + n_clips - 1} | {singles} "
            f"| {a['map50']:.1f} | {cell['mean']:.1f} | {rows['b']['map50']:.1f} | {c['map50']:.1f} "
            f"| {c['map50'] - a['map50']:+.1f} "
            f"| {c['map50'] - cell['mean']:+.1f} | {a['draws']:.0f} → {c['draws']:.0f} "
            f"| {a['num_fragmentations']:.0f} → {c['num_fragmentations']:.0f} "
            f"| {a['minutes']:.1f} → {c['minutes']:.1f} ({cell['scratch']:.0f}) | {missed} |"
        )
    gain = [cell["c"]["map50"] - cell["a"]["map50"] for cell in cells]
    over_mean = [cell["c"]["map50"] - cell["mean"] for cell in cells]
    print(f"\n(c)-(a) min/median/max: {_spread(gain)}; (c)-mean: {_spread(over_mean)}")
    ratio = [cell["c"]["minutes"] / max(cell["a"]["minutes"], 1e-9) for cell in cells]
    spread = f"{min(ratio):.2f} / {statistics.median(ratio):.2f} / {max(ratio):.2f}"
    print(f"review minutes (c)/(a) min/median/max: {spread}")
    met = sum(all(cell["checks"].values()) for cell in cells)
    print(f"cells meeting every target: {met} of {len(cells)}")


def rows() -> list[tuple[str, float, float, str]]:
    """The summary row of ``python -m benchmarks``: median mAP@0.5 of (c) and of (a) over the cells."""
    cells = run(_parser().parse_args([]))
    return [
        (
            "autolabel mAP@0.5, ensemble+tracking+hindsight (median cell)",
            statistics.median(cell["c"]["map50"] for cell in cells),
            statistics.median(cell["a"]["map50"] for cell in cells),
            "validation-best member frame by frame",
        )
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autolabel_quality", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seed sets")
    parser.add_argument(
        "--ranges", type=int, nargs="+", default=list(EVALUATION_RANGES), help="first scene of each range"
    )
    parser.add_argument("--clips", type=int, default=6, help="scenes per evaluation range")
    parser.add_argument("--frames", type=int, default=60, help="frames per evaluation clip")
    parser.add_argument("--conf-type", choices=CONF_TYPES, default=DEFAULT_CONF_TYPE, help="WBF fused score")
    parser.add_argument(
        "--drop-margin", type=float, default=DROP_MARGIN, help="mAP@0.5 margin to drop a member"
    )
    parser.add_argument(
        "--strong-start", type=float, default=0.8, help="score at which a strongest-member box starts a track"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(".dataengine/bench-cache"), help="trained detectors and detections"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    cells = run(args)
    print_summary(cells, args.clips)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
