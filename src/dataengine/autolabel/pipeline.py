"""From several detectors' raw output on a clip to annotation frames: fuse, track, apply hindsight.

Pure (no model, no storage), so tests and benchmarks drive it with hand-made or cached detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.autolabel.ensemble import FusionParams, class_thresholds, fuse_frame
from dataengine.autolabel.hindsight import HindsightParams, TrackBox, apply_hindsight
from dataengine.autolabel.labelling import MIN_BOX_SIDE_PX, FrameSize, clean_detections
from dataengine.autolabel.tracks import TrackerParams, track_detections
from dataengine.clips import frame_name
from dataengine.config import Settings
from dataengine.formats import Box, Frame
from dataengine.formats.annotations import Origin
from dataengine.vision.inference import Detections

PIPELINE = "wbf+bytetrack+hindsight/1"


@dataclass(frozen=True, slots=True)
class AutolabelParams:
    """Every knob of the labelling pipeline; :meth:`from_settings` reads them from the configuration."""

    classes: tuple[str, ...]
    weights: tuple[float, ...] = (1.0,)
    score_threshold: float = 0.5
    class_thresholds: Mapping[str, float] = field(default_factory=dict)
    wbf_iou: float = 0.55
    low_score: float = 0.1
    track_iou: float = 0.3
    gap_frames: int = 4
    min_track_frames: int = 3
    smoothing: float = 1.0

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
        )

    @property
    def thresholds(self) -> NDArray[np.float64]:
        """The score threshold of each class index."""
        return class_thresholds(self.classes, self.class_thresholds, self.score_threshold)

    def fusion(self) -> FusionParams:
        """The WBF settings."""
        return FusionParams(weights=self.weights, iou_threshold=self.wbf_iou, skip_score=self.low_score)

    def tracker(self) -> TrackerParams:
        """The tracker settings: a lost track can be found again within the gap that would be filled."""
        return TrackerParams(
            high=self.thresholds, low=self.low_score, match_iou=self.track_iou, max_gap=self.gap_frames
        )

    def hindsight(self) -> HindsightParams:
        """The hindsight settings."""
        return HindsightParams(self.gap_frames, self.min_track_frames, self.smoothing)

    def to_producer(self) -> dict[str, Any]:
        """The JSON form recorded in ``producer.params`` of the annotation version."""
        values = asdict(self)
        values.pop("classes")
        values["weights"] = list(self.weights)
        values["class_thresholds"] = dict(zip(self.classes, self.thresholds.tolist(), strict=True))
        return values


def fuse(per_model: Sequence[Detections], params: AutolabelParams) -> Detections:
    """One frame's detections of the ensemble: WBF of several models, or one model's above ``low_score``."""
    if len(per_model) == 1:
        return per_model[0].above(params.low_score)
    return fuse_frame(per_model, params.fusion())


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
    fused: Sequence[Detections], sizes: Sequence[FrameSize], params: AutolabelParams, *, n_models: int
) -> list[Frame]:
    """One :class:`Frame` per sampled frame, from each frame's fused detections.

    Boxes are cleaned (clipped to the frame), tracked, and passed through hindsight; tracks whose
    confidence stays under their class's threshold are dropped. Frames without boxes keep ``boxes=[]``.
    """
    if len(fused) != len(sizes):
        raise ValueError(f"{len(fused)} detection sets for {len(sizes)} frames")
    n_classes = len(params.classes)
    cleaned = [
        clean_detections(d, width=s.width, height=s.height, n_classes=n_classes)
        for d, s in zip(fused, sizes, strict=True)
    ]
    tracks = track_detections(cleaned, params.tracker())
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
