"""Which models join the ensemble, and how much each counts for each class, from validation quality.

A member far below the best on validation only adds its mistakes: WBF discounts what the others miss, so
a weak member pulls down boxes the best one finds, and its own false positives survive at a lower score.
Such members are dropped. The others are weighted per class by their validation AP relative to the best
member's AP for that class, so a member counts fully where it is the best and less where it is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Default of ``autolabel_drop_margin``: members more than this below the best validation mAP@0.5 go.
DROP_MARGIN = 0.10


@dataclass(frozen=True, slots=True)
class MemberQuality:
    """One model's validation quality: mAP@0.5 and AP@0.5 per class (None where the class had no
    support), measured on the validation set named ``held_out``."""

    model_id: str
    map50: float
    per_class: Mapping[str, float | None] = field(default_factory=dict)
    held_out: str = ""


@dataclass(frozen=True, slots=True)
class EnsemblePlan:
    """The members kept (in the configured order), their weight per class, and why others were dropped.

    ``class_weights[name][k]`` is the weight of ``model_ids[k]`` for class ``name``.
    """

    model_ids: tuple[str, ...]
    class_weights: Mapping[str, tuple[float, ...]]
    dropped: Mapping[str, str] = field(default_factory=dict)
    #: Where the weights come from, in words (recorded in the annotation's producer).
    basis: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded in ``producer.params``."""
        return {
            "basis": self.basis,
            "dropped": dict(self.dropped),
            "class_weights": {name: list(row) for name, row in self.class_weights.items()},
        }


def plan_ensemble(
    quality: Sequence[MemberQuality], classes: Sequence[str], *, drop_margin: float = DROP_MARGIN
) -> EnsemblePlan:
    """Drop members whose mAP@0.5 is more than ``drop_margin`` below the best; weight the rest per class.

    A kept member's weight for a class is its AP there divided by the best kept member's AP there. Where
    no member has an AP for a class (no support, or all zero), the overall mAP@0.5 ratio stands in.
    Raises ValueError when members were scored on different validation sets, which do not compare.
    """
    if not quality:
        raise ValueError("no members to plan an ensemble of")
    sets = sorted({q.held_out for q in quality})
    if len(sets) > 1:
        raise ValueError(f"the members were scored on different validation sets ({', '.join(sets)})")
    best = max(q.map50 for q in quality)
    kept = [q for q in quality if q.map50 >= best - drop_margin]
    dropped = {
        q.model_id: (
            f"validation mAP@0.5 {q.map50:.3f} is more than {drop_margin:.2f} below the best, {best:.3f}"
        )
        for q in quality
        if q not in kept
    }
    weights = {name: _class_row(kept, name) for name in classes}
    basis = f"validation AP per class on {sets[0]}" if sets[0] else "validation AP per class"
    return EnsemblePlan(tuple(q.model_id for q in kept), weights, dropped, basis)


def _class_row(kept: Sequence[MemberQuality], name: str) -> tuple[float, ...]:
    """The kept members' weights for one class: AP over the best AP, or mAP@0.5 over the best."""
    aps = [_ap(q, name) for q in kept]
    if all(ap is None for ap in aps) or max(ap or 0.0 for ap in aps) <= 0:
        aps = [q.map50 for q in kept]
    top = max(ap or 0.0 for ap in aps)
    if top <= 0:
        return tuple(1.0 for _ in kept)
    # A member with no AP for a class another member was scored on is treated as the worst, not the best.
    return tuple(round((ap or 0.0) / top, 4) for ap in aps)


def _ap(quality: MemberQuality, name: str) -> float | None:
    value = quality.per_class.get(name)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def equal_plan(
    model_ids: Sequence[str], classes: Sequence[str], weights: Sequence[float], basis: str
) -> EnsemblePlan:
    """Every member kept with the same ``weights`` for every class (fixed weights, or no validation)."""
    row = tuple(float(w) for w in weights)
    return EnsemblePlan(tuple(model_ids), {name: row for name in classes}, {}, basis)


def quality_from_metrics(model_id: str, metrics: Mapping[str, Any]) -> MemberQuality | None:
    """A model's :class:`MemberQuality` from its lineage metrics (``metrics["eval"]``, written when it
    was evaluated for promotion), or None when it was never evaluated.

    A class's AP is its AP@0.5 (``per_class[name]["ap50"]``), else its AP@[.5:.95] (``"ap"``, or the
    bare number older records kept); None where the class had no ground truth.
    """
    evaluation = metrics.get("eval")
    if not isinstance(evaluation, Mapping) or not _is_number(evaluation.get("map50")):
        return None
    per_class = {str(name): _class_ap(value) for name, value in (evaluation.get("per_class") or {}).items()}
    held_out = str(metrics.get("held_out") or evaluation.get("held_out") or "")
    return MemberQuality(model_id, float(evaluation["map50"]), per_class, held_out)


def _class_ap(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("ap50") if _is_number(value.get("ap50")) else value.get("ap")
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
