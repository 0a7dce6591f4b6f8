"""From several detectors' raw output on a clip to annotation frames: fuse, track, apply hindsight.

Pure (no model, no storage), so tests and benchmarks drive it with hand-made or cached detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.autolabel.ensemble import (
    DEFAULT_CONF_TYPE,
    ConfType,
    FusionParams,
    as_conf_type,
    class_thresholds,
    fuse_frame,
    strongest,
)
from dataengine.autolabel.hindsight import HindsightParams, TrackBox, apply_hindsight
from dataengine.autolabel.labelling import MIN_BOX_SIDE_PX, FrameSize, clean_detections
from dataengine.autolabel.members import EnsemblePlan
from dataengine.autolabel.recovery import RecoveryParams, recover_tracks
from dataengine.autolabel.tracks import TrackerParams, track_detections
from dataengine.clips import frame_name
from dataengine.config import Settings
from dataengine.formats import Box, Frame
from dataengine.formats.annotations import Origin
from dataengine.vision.inference import Detections

PIPELINE = "wbf+bytetrack+hindsight/2"


@dataclass(frozen=True, slots=True)
class AutolabelParams:
    """Every knob of the labelling pipeline; :meth:`from_settings` reads them from the configuration."""

    classes: tuple[str, ...]
    weights: tuple[float, ...] = (1.0,)
    #: Per-class weights of the models (class name -> one weight per model); classes not named use
    #: ``weights``. Set from validation quality by :func:`dataengine.autolabel.members.plan_ensemble`.
    class_weights: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    conf_type: ConfType = DEFAULT_CONF_TYPE
    score_threshold: float = 0.5
    class_thresholds: Mapping[str, float] = field(default_factory=dict)
    wbf_iou: float = 0.55
    low_score: float = 0.1
    track_iou: float = 0.3
    gap_frames: int = 4
    min_track_frames: int = 3
    smoothing: float = 1.0
    #: A track its class's strongest member sees on at least this share of its frames is recovered.
    recover_share: float = 0.5
    #: The score at which a box of a class's strongest member may start a track the fused boxes did not
    #: (never below the class's threshold; above 1, never).
    strong_start: float = 0.8

    @classmethod
    def from_settings(cls, settings: Settings, *, classes: Sequence[str], n_models: int) -> AutolabelParams:
        """The settings' values for an ensemble of ``n_models`` models over ``classes``."""
        weights = tuple(settings.autolabel_model_weights) or (1.0,) * n_models
        if len(weights) != n_models:
            raise ValueError(
                f"autolabel_model_weights has {len(weights)} weight(s) for {n_models} autolabel model(s)"
            )
        return cls(
            classes=tuple(classes),
            weights=weights,
            score_threshold=settings.score_threshold,
            class_thresholds=dict(settings.autolabel_class_thresholds),
            wbf_iou=settings.autolabel_wbf_iou,
            low_score=min(settings.autolabel_low_score, settings.score_threshold),
            track_iou=settings.autolabel_track_iou,
            gap_frames=settings.autolabel_gap_frames,
            min_track_frames=settings.autolabel_min_track_frames,
            smoothing=settings.autolabel_smoothing,
            conf_type=as_conf_type(settings.autolabel_conf_type),
            recover_share=settings.autolabel_recover_share,
            strong_start=settings.autolabel_strong_start,
        )

    def with_plan(self, plan: EnsemblePlan) -> AutolabelParams:
        """These parameters for the plan's members, weighted as it says: one row for every class when its
        rows agree (fixed or equal weights), else a row per class."""
        rows = {tuple(row) for row in plan.class_weights.values()}
        if len(rows) == 1:
            return replace(self, weights=rows.pop(), class_weights={})
        return replace(self, weights=(1.0,) * len(plan.model_ids), class_weights=dict(plan.class_weights))

    @property
    def thresholds(self) -> NDArray[np.float64]:
        """The score threshold of each class index."""
        return class_thresholds(self.classes, self.class_thresholds, self.score_threshold)

    def fusion(self) -> FusionParams:
        """The WBF settings: one row of model weights per class."""
        unknown = sorted(set(self.class_weights) - set(self.classes))
        if unknown:
            raise ValueError(
                f"class weights name unknown classes {unknown}; the classes are {list(self.classes)}"
            )
        rows = tuple(tuple(self.class_weights.get(name, self.weights)) for name in self.classes)
        return FusionParams(
            rows, iou_threshold=self.wbf_iou, skip_score=self.low_score, conf_type=self.conf_type
        )

    def tracker(self) -> TrackerParams:
        """The tracker settings: a lost track can be found again within the gap that would be filled."""
        return TrackerParams(
            high=self.thresholds,
            low=self.low_score,
            match_iou=self.track_iou,
            max_gap=self.gap_frames,
            extra_start=self.strong_start,
        )

    def recovery(self) -> RecoveryParams:
        """The recovery settings: a strong member's box joins a track where it overlaps its path."""
        return RecoveryParams(share=self.recover_share)

    def hindsight(self) -> HindsightParams:
        """The hindsight settings."""
        return HindsightParams(self.gap_frames, self.min_track_frames, self.smoothing)

    def to_producer(self) -> dict[str, Any]:
        """The JSON form recorded in ``producer.params`` of the annotation version."""
        values = asdict(self)
        values.pop("classes")
        values["weights"] = list(self.weights)
        values["class_weights"] = {name: list(row) for name, row in self.class_weights.items()}
        values["class_thresholds"] = dict(zip(self.classes, self.thresholds.tolist(), strict=True))
        return values


def fuse(per_model: Sequence[Detections], params: AutolabelParams) -> Detections:
    """One frame's detections of the ensemble: WBF of several models, or one model's above ``low_score``."""
    if len(per_model) == 1:
        return per_model[0].above(params.low_score)
    return fuse_frame(per_model, params.fusion())


def strongest_view(per_model: Sequence[Detections], params: AutolabelParams) -> Detections:
    """Each class's boxes from its most heavily weighted model, above ``low_score`` (what hindsight
    recovers from); empty for one model, where the fused boxes are that model's boxes already."""
    if len(per_model) == 1:
        return Detections.empty()
    return strongest([d.above(params.low_score) for d in per_model], params.fusion())


def _box(item: TrackBox, classes: Sequence[str], size: FrameSize, origin: Origin) -> Box | None:
    # Rounding to 1/100 px keeps files small; clipping again keeps the rounded box inside the frame.
    x1, y1, x2, y2 = (round(v, 2) for v in item.xyxy)
    x1, x2 = max(0.0, x1), min(float(size.width), x2)
    y1, y2 = max(0.0, y1), min(float(size.height), y2)
    if x2 - x1 < MIN_BOX_SIDE_PX or y2 - y1 < MIN_BOX_SIDE_PX:
        return None
    return Box(
        label=classes[item.label],
        xyxy=(x1, y1, x2, y2),
        track=item.track,
        score=round(item.score, 4),
        origin="interpolated" if item.interpolated else origin,
    )


def label_clip(
    fused: Sequence[Detections],
    sizes: Sequence[FrameSize],
    params: AutolabelParams,
    *,
    n_models: int,
    strong: Sequence[Detections] | None = None,
) -> list[Frame]:
    """One :class:`Frame` per sampled frame, from each frame's fused detections.

    Boxes are cleaned (clipped to the frame), tracked, and passed through hindsight; tracks whose
    confidence stays under their class's threshold are dropped. ``strong`` (per frame, from
    :func:`strongest_view`) lets hindsight recover the tracks each class's strongest member sees.
    Frames without boxes keep ``boxes=[]``.
    """
    if len(fused) != len(sizes) or (strong is not None and len(strong) != len(sizes)):
        raise ValueError(f"{len(fused)} detection sets for {len(sizes)} frames")
    n_classes = len(params.classes)
    cleaned = [
        clean_detections(d, width=s.width, height=s.height, n_classes=n_classes)
        for d, s in zip(fused, sizes, strict=True)
    ]
    if strong is None:
        tracks = track_detections(cleaned, params.tracker())
    else:
        seen = [
            clean_detections(d, width=s.width, height=s.height, n_classes=n_classes)
            for d, s in zip(strong, sizes, strict=True)
        ]
        tracks = recover_tracks(track_detections(cleaned, params.tracker(), seen), seen, params.recovery())
    thresholds = params.thresholds
    boxes = [
        box
        for box in apply_hindsight(tracks, [s.index for s in sizes], params.hindsight())
        if box.score >= thresholds[box.label]
    ]
    origin: Origin = "ensemble" if n_models > 1 else "detector"
    frames = [Frame(s.index, frame_name(s.index), s.width, s.height) for s in sizes]
    for item in sorted(boxes, key=lambda b: (b.position, b.track)):
        box = _box(item, params.classes, sizes[item.position], origin)
        if box is not None:
            frames[item.position].boxes.append(box)
    return _renumber(frames)


def _renumber(frames: list[Frame]) -> list[Frame]:
    """Track ids 1..n in order of first appearance, after tracks were dropped by the score filter."""
    numbers: dict[int, int] = {}
    for frame in frames:
        for i, box in enumerate(frame.boxes):
            assert box.track is not None
            number = numbers.setdefault(box.track, len(numbers) + 1)
            if number != box.track:
                frame.boxes[i] = Box(box.label, box.xyxy, number, box.score, box.origin)
    return frames
