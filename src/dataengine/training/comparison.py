"""The typed results of a candidate's evaluation against the promoted model and of the promotion decision.

:class:`CandidateComparison` is what ``evaluate_candidate`` measured (both models on both held-out sets)
and what ``models/{id}/evaluation.json`` holds; :class:`PromotionDecision` is what ``promote_if_better``
decided, with every check of the gate. Both read back from their JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataengine.training.gate import GateCheck, ScoredSet
from dataengine.training.metrics import Evaluation, format_map


def _evaluation(doc: Any) -> Evaluation | None:
    return Evaluation.from_dict(doc) if isinstance(doc, Mapping) else None


def _set_lines(kind: str, scored: ScoredSet | None, promoted_id: str | None) -> list[str]:
    if scored is None:
        return [f"{kind}: none yet (no val clip came in through a trigger)"]
    lines = [f"{kind} {scored.label}: candidate {scored.candidate.summary()}"]
    if scored.promoted is not None:
        lines.append(f"{kind} {scored.label}: promoted {promoted_id} {scored.promoted.summary()}")
    return lines


@dataclass(frozen=True, slots=True)
class CandidateComparison:
    """A candidate and the promoted model scored on the same frames of both held-out sets, in one task.

    ``regression`` is the frozen regression set; ``edge_case`` the dataset version's edge-case set, or
    None when it has none yet. ``promoted_model_id`` is None when no model is promoted.
    """

    model_id: str
    dataset_id: str
    promoted_model_id: str | None
    regression: ScoredSet
    edge_case: ScoredSet | None = None

    @property
    def held_out(self) -> str:
        """The regression set's label, e.g. ``default-heldout@1``."""
        return self.regression.label

    def summary(self) -> str:
        """A few lines: each set, with both models' overall and per-class figures."""
        return "\n".join(
            _set_lines("regression set", self.regression, self.promoted_model_id)
            + _set_lines("edge-case set", self.edge_case, self.promoted_model_id)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``evaluation.json`` (``metrics``/``previous`` are the regression set's)."""
        edge = self.edge_case
        return {
            "model_id": self.model_id,
            "dataset_id": self.dataset_id,
            "held_out": self.held_out,
            "metrics": self.regression.candidate.to_dict(),
            "previous": {
                "model_id": self.promoted_model_id,
                "metrics": self.regression.promoted.to_dict() if self.regression.promoted else None,
            },
            "edge_case": None
            if edge is None
            else {
                "held_out": edge.label,
                "metrics": edge.candidate.to_dict(),
                "previous_metrics": edge.promoted.to_dict() if edge.promoted else None,
            },
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CandidateComparison:
        """Parse :meth:`to_dict`'s form (records without an ``edge_case`` key have no edge-case set)."""
        previous = doc.get("previous") or {}
        candidate = Evaluation.from_dict(doc["metrics"])
        regression = ScoredSet(str(doc["held_out"]), candidate, _evaluation(previous.get("metrics")))
        edge_doc = doc.get("edge_case")
        edge = None
        if isinstance(edge_doc, Mapping):
            edge = ScoredSet(
                str(edge_doc["held_out"]),
                Evaluation.from_dict(edge_doc["metrics"]),
                _evaluation(edge_doc.get("previous_metrics")),
            )
        return cls(
            model_id=str(doc["model_id"]),
            dataset_id=str(doc["dataset_id"]),
            promoted_model_id=previous.get("model_id"),
            regression=regression,
            edge_case=edge,
        )


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """What the gate decided for a candidate: the verdict, the headline numbers and every check.

    ``new_map``/``previous_map`` are mAP@[.5:.95] on the regression set ``held_out``;
    ``new_edge_map``/``previous_edge_map`` on the edge-case set ``edge_case`` (None without one).
    """

    model_id: str
    promoted: bool
    new_map: float | None
    previous_model_id: str | None
    previous_map: float | None
    held_out: str
    reason: str
    edge_case: str | None = None
    new_edge_map: float | None = None
    previous_edge_map: float | None = None
    checks: tuple[GateCheck, ...] = ()

    def summary(self) -> str:
        """The verdict and its headline numbers in one line, then the reason."""
        verdict = "promoted" if self.promoted else "refused"
        numbers = f"regression mAP {format_map(self.new_map)} on {self.held_out}"
        if self.edge_case:
            numbers += f", edge-case mAP {format_map(self.new_edge_map)} on {self.edge_case}"
        return f"{self.model_id} {verdict} ({numbers}): {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in ``metrics.json`` under ``decision``."""
        return {
            "model_id": self.model_id,
            "promoted": self.promoted,
            "new_map": self.new_map,
            "previous_model_id": self.previous_model_id,
            "previous_map": self.previous_map,
            "held_out": self.held_out,
            "reason": self.reason,
            "edge_case": self.edge_case,
            "new_edge_map": self.new_edge_map,
            "previous_edge_map": self.previous_edge_map,
            "checks": [check.to_dict() for check in self.checks],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PromotionDecision:
        """Parse :meth:`to_dict`'s form, or a decision stored before the gate kept its checks."""

        def number(key: str) -> float | None:
            value = doc.get(key)
            return None if value is None else float(value)

        return cls(
            model_id=str(doc["model_id"]),
            promoted=bool(doc["promoted"]),
            new_map=number("new_map"),
            previous_model_id=doc.get("previous_model_id"),
            previous_map=number("previous_map"),
            held_out=str(doc.get("held_out", "")),
            reason=str(doc.get("reason", "")),
            edge_case=doc.get("edge_case"),
            new_edge_map=number("new_edge_map"),
            previous_edge_map=number("previous_edge_map"),
            checks=tuple(GateCheck.from_dict(c) for c in doc.get("checks") or ()),
        )
