"""What an evaluation measured: mAP and each class's AP with its support.

A class with no ground-truth box in the evaluated frames was not measured: its AP is ``None``, shown as
"n/a (0 examples)", never 0.0 (a 0.0 would claim the model misses every instance of it). Every per-class
figure carries its support, the number of ground-truth boxes it was measured on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How an unmeasured figure reads wherever it is shown.
NA_TEXT = "n/a (0 examples)"


def format_ap(ap: float | None, support: int | None, *, digits: int = 3) -> str:
    """``0.412 (37 boxes)``, or ``n/a (0 examples)`` for a class that was not measured."""
    if ap is None:
        return NA_TEXT if not support else "n/a"
    count = "support not recorded" if support is None else f"{support} box{'es' if support != 1 else ''}"
    return f"{ap:.{digits}f} ({count})"


def format_map(value: float | None, *, digits: int = 3) -> str:
    """An overall figure, or ``n/a (0 examples)`` when the set had no ground truth."""
    return NA_TEXT if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True, slots=True)
class ClassScore:
    """One class's AP@[.5:.95] and AP@.5 on the evaluated frames, and its support.

    ``ap`` is None when the class has no ground-truth box there. ``support`` is None only in records
    written before supports were kept.
    """

    name: str
    support: int | None
    ap: float | None
    ap50: float | None = None

    @property
    def measured(self) -> bool:
        """Whether the class had ground truth, so that its AP means something."""
        return self.ap is not None

    def text(self, *, digits: int = 3) -> str:
        """``wheelchair 0.412 (37 boxes)`` or ``wheelchair n/a (0 examples)``."""
        return f"{self.name} {format_ap(self.ap, self.support, digits=digits)}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"ap", "ap50", "support"}`` (``null`` APs for an unmeasured class)."""
        return {"ap": self.ap, "ap50": self.ap50, "support": self.support}

    @classmethod
    def from_value(cls, name: str, value: Any) -> ClassScore:
        """Parse a stored value: the JSON form, or a bare AP from records that kept no support."""
        if isinstance(value, Mapping):
            support = value.get("support")
            return cls(
                name=name,
                support=None if support is None else int(support),
                ap=_float_or_none(value.get("ap")),
                ap50=_float_or_none(value.get("ap50")),
            )
        return cls(name=name, support=None, ap=_float_or_none(value))


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """COCO box metrics of one model on one set of frames (``held_out`` names the set).

    ``map`` (mAP@[.5:.95]), ``map50``, ``map75`` and ``mar100`` average over the classes that have
    ground truth; they are None when the set has no ground-truth box at all.
    """

    held_out: str
    map: float | None
    map50: float | None
    map75: float | None
    mar100: float | None
    classes: tuple[ClassScore, ...]
    n_images: int
    n_gt_boxes: int
    n_detections: int
    model_id: str = ""

    def score(self, name: str) -> ClassScore:
        """The score of class ``name``; a class the evaluation did not know is unmeasured, support 0."""
        for score in self.classes:
            if score.name == name:
                return score
        return ClassScore(name=name, support=0, ap=None)

    @property
    def per_class(self) -> dict[str, float | None]:
        """AP@[.5:.95] per class name; None for a class that was not measured."""
        return {score.name: score.ap for score in self.classes}

    @property
    def support(self) -> dict[str, int | None]:
        """Ground-truth boxes per class name."""
        return {score.name: score.support for score in self.classes}

    def summary(self) -> str:
        """One line: what was scored, the overall figures, then every class with its support."""
        who = f"{self.model_id} on " if self.model_id else ""
        classes = ", ".join(score.text() for score in self.classes)
        return (
            f"{who}{self.held_out} ({self.n_images} images, {self.n_gt_boxes} boxes, "
            f"{self.n_detections} detections): mAP {format_map(self.map)}, "
            f"mAP@.5 {format_map(self.map50)}" + (f"; per class {classes}" if classes else "")
        )

    def table(self) -> str:
        """What was scored, the overall figures, and one row per class with its support."""
        who = f"{self.model_id} on " if self.model_id else ""
        lines = [
            f"{who}{self.held_out}: {self.n_images} images, {self.n_gt_boxes} boxes, "
            f"{self.n_detections} detections",
            f"mAP {format_map(self.map)}  mAP@.5 {format_map(self.map50)}  mAP@.75 {format_map(self.map75)}  "
            f"AR@100 {format_map(self.mar100)}",
        ]
        width = max([5, *(len(score.name) for score in self.classes)])
        lines.append(f"{'class':<{width}}  {'AP':>6}  {'AP@.5':>6}  {'boxes':>6}")
        for score in self.classes:
            if score.ap is None:
                figures = f"{NA_TEXT:>14}" if not score.support else f"{'n/a':>14}"
            else:
                figures = f"{score.ap:>6.3f}  {format_map(score.ap50):>6}"
            support = "?" if score.support is None else str(score.support)
            lines.append(f"{score.name:<{width}}  {figures}  {support:>6}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``metrics.json`` and on the model row."""
        return {
            "held_out": self.held_out,
            "model_id": self.model_id,
            "map": self.map,
            "map50": self.map50,
            "map75": self.map75,
            "mar100": self.mar100,
            "per_class": {score.name: score.to_dict() for score in self.classes},
            "n_images": self.n_images,
            "n_gt_boxes": self.n_gt_boxes,
            "n_detections": self.n_detections,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Evaluation:
        """Parse :meth:`to_dict`'s form, or the plain dict of records written before it existed."""
        per_class = doc.get("per_class") or {}
        return cls(
            held_out=str(doc.get("held_out") or ""),
            model_id=str(doc.get("model_id") or ""),
            map=_float_or_none(doc.get("map")),
            map50=_float_or_none(doc.get("map50")),
            map75=_float_or_none(doc.get("map75")),
            mar100=_float_or_none(doc.get("mar100")),
            classes=tuple(ClassScore.from_value(str(n), v) for n, v in per_class.items()),
            n_images=int(doc.get("n_images") or 0),
            n_gt_boxes=int(doc.get("n_gt_boxes") or 0),
            n_detections=int(doc.get("n_detections") or 0),
        )
