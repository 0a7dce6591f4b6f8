"""Weighted Boxes Fusion of several detectors' boxes on one frame, through ``ensemble-boxes``.

WBF (Solovyev et al., 2021) averages a cluster's coordinates weighted by score and model weight, where
NMS would keep one box and drop the rest. The library works in normalised coordinates with one weight
per model; here each class is fused on its own with that class's weights, so a member that is good at
beds and poor at wheelchairs counts fully for beds only, and a member weighted 0 for a class takes no
part in it. The fused score follows ``conf_type`` (docs/autolabel.md, "Ensemble").
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from ensemble_boxes import weighted_boxes_fusion
from numpy.typing import NDArray

from dataengine.vision.inference import Detections

ConfType = Literal["max", "box_and_model_avg", "absent_model_aware_avg", "avg"]
#: The fused-score rules ``ensemble_boxes.weighted_boxes_fusion`` accepts (it calls ``exit()`` on others).
CONF_TYPES: Final[tuple[ConfType, ...]] = ("max", "box_and_model_avg", "absent_model_aware_avg", "avg")
#: The default rule (docs/autolabel.md, "Ensemble": why this one).
DEFAULT_CONF_TYPE: Final[ConfType] = "box_and_model_avg"


@dataclass(frozen=True, slots=True)
class FusionParams:
    """WBF settings: the weight of each model for each class, the cluster IoU, the input score floor and
    the fused-score rule.

    ``weights[c][m]`` is model ``m``'s weight for class ``c``; one row serves every class. A weight of 0
    leaves the model out of that class.
    """

    weights: tuple[tuple[float, ...], ...]
    iou_threshold: float = 0.55
    skip_score: float = 0.0
    conf_type: ConfType = DEFAULT_CONF_TYPE

    def __post_init__(self) -> None:
        if not self.weights or len({len(row) for row in self.weights}) != 1 or not self.weights[0]:
            raise ValueError(f"model weights must be rows of one length per class, got {self.weights}")
        for row in self.weights:
            if any(w < 0 or not np.isfinite(w) for w in row) or not any(w > 0 for w in row):
                raise ValueError(f"model weights must be >= 0 with one > 0 per class, got {list(row)}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {self.iou_threshold}")
        if self.conf_type not in CONF_TYPES:
            raise ValueError(f"conf_type must be one of {', '.join(CONF_TYPES)}, got {self.conf_type!r}")

    @property
    def n_models(self) -> int:
        """The number of models the weights are for."""
        return len(self.weights[0])

    def of_class(self, label: int) -> NDArray[np.float64]:
        """The models' weights for class index ``label``."""
        row = self.weights[label] if len(self.weights) > 1 else self.weights[0]
        return np.asarray(row, dtype=np.float64)


def fuse_frame(per_model: Sequence[Detections], params: FusionParams) -> Detections:
    """The fused detections of one frame from each model's detections (``per_model[m]`` by model ``m``).

    Boxes scoring below ``skip_score`` are ignored. Within a class, boxes whose IoU with a cluster's fused
    box exceeds ``iou_threshold`` join it; the fused box is the (score x weight)-weighted mean of its
    members, scored by ``conf_type``. Results are sorted by descending score.
    """
    if len(per_model) != params.n_models:
        raise ValueError(f"{len(per_model)} detection sets for {params.n_models} model weights")
    kept = [_valid(d.above(params.skip_score)) for d in per_model]
    present = sorted({int(label) for d in kept for label in d.labels.tolist()})
    if not present:
        return Detections.empty()
    offset, scale = _frame_of(kept)
    parts = [_fuse_class(kept, label, params, offset, scale) for label in present]
    boxes = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    labels = np.concatenate(
        [np.full(p[1].shape[0], label, dtype=np.int64) for p, label in zip(parts, present, strict=True)]
    )
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order].astype(np.float32), scores[order].astype(np.float32), labels[order])


def _valid(detections: Detections) -> Detections:
    """Finite boxes of positive area: the library would warn about and drop or swap the others."""
    boxes = detections.boxes_xyxy.reshape(-1, 4)
    keep = (
        np.isfinite(boxes).all(axis=1)
        & np.isfinite(detections.scores)
        & (boxes[:, 2] > boxes[:, 0])
        & (boxes[:, 3] > boxes[:, 1])
    )
    return Detections(boxes[keep], detections.scores[keep], detections.labels[keep])


def _frame_of(per_model: Sequence[Detections]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The corner and size of the rectangle around every box, as (x, y, x, y) offset and scale: mapping
    it onto [0, 1]² for the library changes no IoU, because a scale along one axis scales every area
    alike."""
    boxes = np.concatenate([d.boxes_xyxy.reshape(-1, 4) for d in per_model]).astype(np.float64)
    lo = np.array([boxes[:, 0].min(), boxes[:, 1].min()])
    span = np.maximum(np.array([boxes[:, 2].max(), boxes[:, 3].max()]) - lo, 1e-9)
    return np.concatenate([lo, lo]), np.concatenate([span, span])


def _fuse_class(
    per_model: Sequence[Detections],
    label: int,
    params: FusionParams,
    offset: NDArray[np.float64],
    scale: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The fused boxes (pixels) and scores of one class, over the models weighted above 0 for it."""
    weights = params.of_class(label)
    models = [m for m in range(len(per_model)) if weights[m] > 0]
    boxes, scores, labels = [], [], []
    for m in models:
        mine = per_model[m].labels == label
        unit = (per_model[m].boxes_xyxy[mine].astype(np.float64) - offset) / scale
        boxes.append(np.clip(unit, 0.0, 1.0).tolist())
        scores.append(per_model[m].scores[mine].astype(np.float64).tolist())
        labels.append([label] * int(mine.sum()))
    with warnings.catch_warnings():
        # Rounding can still make a tiny box zero-area in [0, 1]; the library warns and drops it.
        warnings.simplefilter("ignore")
        fused, fused_scores, _ = weighted_boxes_fusion(
            boxes,
            scores,
            labels,
            weights=weights[models].tolist(),
            iou_thr=params.iou_threshold,
            skip_box_thr=0.0,
            conf_type=params.conf_type,
        )
    pixels = np.asarray(fused, dtype=np.float64).reshape(-1, 4) * scale + offset
    return pixels, np.asarray(fused_scores, dtype=np.float64)


def strongest(per_model: Sequence[Detections], params: FusionParams) -> Detections:
    """Each class's boxes as its most heavily weighted model saw them (the first of equals): what
    hindsight falls back on where the fused score of a box that model sees dips."""
    if len(per_model) != params.n_models:
        raise ValueError(f"{len(per_model)} detection sets for {params.n_models} model weights")
    labels = sorted({int(label) for d in per_model for label in d.labels.tolist()})
    parts = []
    for label in labels:
        best = per_model[int(np.argmax(params.of_class(label)))]
        mine = best.labels == label
        parts.append(Detections(best.boxes_xyxy[mine], best.scores[mine], best.labels[mine]))
    if not parts:
        return Detections.empty()
    return Detections(
        np.concatenate([p.boxes_xyxy.reshape(-1, 4) for p in parts]).astype(np.float32),
        np.concatenate([p.scores for p in parts]).astype(np.float32),
        np.concatenate([p.labels for p in parts]).astype(np.int64),
    )


def class_thresholds(
    classes: Sequence[str], per_class: Mapping[str, float], default: float
) -> NDArray[np.float64]:
    """The score threshold of each class index: ``per_class[name]`` where given, else ``default``."""
    unknown = sorted(set(per_class) - set(classes))
    if unknown:
        raise ValueError(f"class thresholds name unknown classes {unknown}; the classes are {list(classes)}")
    return np.asarray([per_class.get(name, default) for name in classes], dtype=np.float64)


def as_conf_type(value: str) -> ConfType:
    """``value`` as a :data:`ConfType`, or ValueError naming the choices."""
    for conf_type in CONF_TYPES:
        if value == conf_type:
            return conf_type
    raise ValueError(f"conf_type must be one of {', '.join(CONF_TYPES)}, got {value!r}")
