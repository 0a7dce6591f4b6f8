"""The promotion gate: the checks a candidate must pass to replace the promoted model, with their numbers.

Both models are scored on two held-out sets (docs/training.md, "Two held-out sets"): the frozen
regression set and the growing edge-case set. The candidate is promoted only if

- its mAP on the regression set does not fall by more than ``promote_map_tolerance``;
- its mAP on the edge-case set rises by more than ``promote_min_delta`` (the regression set's mAP must
  rise instead while there is no edge-case set with ground truth);
- no class with at least ``promote_min_class_support`` boxes in a set loses more AP there than its
  tolerance (``promote_class_tolerances[name]``, else ``promote_class_tolerance``).

Every check is kept with its numbers, so the decision says why, and a one-class regression names the class.
The functions here are pure: they compare :class:`Evaluation` values and read no store or database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataengine.config import Settings
from dataengine.training.metrics import Evaluation, format_map


@dataclass(frozen=True, slots=True)
class GateRules:
    """The gate's thresholds (the ``promote_*`` settings)."""

    min_delta: float = 0.0
    map_tolerance: float = 0.02
    class_tolerance: float = 0.05
    class_tolerances: Mapping[str, float] = field(default_factory=dict)
    min_class_support: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> GateRules:
        """The rules the settings give."""
        return cls(
            min_delta=settings.promote_min_delta,
            map_tolerance=settings.promote_map_tolerance,
            class_tolerance=settings.promote_class_tolerance,
            class_tolerances=dict(settings.promote_class_tolerances),
            min_class_support=settings.promote_min_class_support,
        )

    def tolerance_of(self, name: str) -> float:
        """How much AP class ``name`` may lose."""
        return float(self.class_tolerances.get(name, self.class_tolerance))


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One check of the gate: what it compared, the two numbers, the limit, and whether it passed."""

    name: str
    passed: bool
    candidate: float | None
    promoted: float | None
    limit: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.name,
            "passed": self.passed,
            "candidate": self.candidate,
            "promoted": self.promoted,
            "limit": self.limit,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> GateCheck:
        """Parse :meth:`to_dict`'s form."""
        return cls(
            name=str(doc["name"]),
            passed=bool(doc["passed"]),
            candidate=None if doc.get("candidate") is None else float(doc["candidate"]),
            promoted=None if doc.get("promoted") is None else float(doc["promoted"]),
            limit=float(doc.get("limit", 0.0)),
            detail=str(doc.get("detail", "")),
        )


@dataclass(frozen=True, slots=True)
class ScoredSet:
    """One held-out set with both models' scores on it (``promoted`` is None when nothing is promoted)."""

    label: str
    candidate: Evaluation
    promoted: Evaluation | None


def _vs(candidate: float | None, promoted: float | None, promoted_id: str) -> str:
    return f"{format_map(candidate)} against {format_map(promoted)} of {promoted_id}"


def _no_fall(name: str, new: float, old: float, tolerance: float, promoted_id: str) -> GateCheck:
    change = new - old
    if change >= 0:
        verdict = f"rose {change:.3f}" if change > 0 else "no change"
    else:
        within = "within" if change >= -tolerance else "more than"
        verdict = f"fell {-change:.3f}, {within} the tolerance {tolerance:.3f}"
    return GateCheck(
        name=name, passed=change >= -tolerance, candidate=new, promoted=old, limit=tolerance,
        detail=f"{name}: {_vs(new, old, promoted_id)}, {verdict}",
    )  # fmt: skip


def _rises(name: str, new: float, old: float, margin: float, promoted_id: str) -> GateCheck:
    change = new - old
    passed = change > margin
    moved = f"rose {change:.3f}" if change > 0 else f"fell {-change:.3f}" if change < 0 else "no change"
    need = f"more than {margin:.3f}" + ("" if passed else " needed")
    return GateCheck(
        name=name, passed=passed, candidate=new, promoted=old, limit=margin,
        detail=f"{name}: {_vs(new, old, promoted_id)}, {moved} ({need})",
    )  # fmt: skip


def _skipped(name: str, why: str) -> GateCheck:
    """A check that could not be made; it passes, and :func:`verdict` refuses if nothing was measured."""
    return GateCheck(
        name=name, passed=True, candidate=None, promoted=None, limit=0.0, detail=f"{name}: {why}"
    )  # fmt: skip


def _measured_map(scored: ScoredSet | None) -> tuple[float, float] | None:
    """Both models' mAP on a set, when the set has ground truth and a promoted model was scored."""
    if scored is None or scored.candidate.map is None or scored.promoted is None:
        return None
    if scored.promoted.map is None:
        return None
    return scored.candidate.map, scored.promoted.map


def _map_checks(
    rules: GateRules, regression: ScoredSet, edge: ScoredSet | None, promoted_id: str
) -> list[GateCheck]:
    checks = []
    overall = _measured_map(regression)
    if overall is not None:
        name = f"regression mAP on {regression.label}"
        checks.append(_no_fall(name, *overall, rules.map_tolerance, promoted_id))
    else:
        checks.append(_skipped(f"regression mAP on {regression.label}", "not measured (no ground truth)"))
    edge_maps = _measured_map(edge)
    if edge is not None and edge_maps is not None:
        name = f"edge-case mAP on {edge.label}"
        checks.append(_rises(name, *edge_maps, rules.min_delta, promoted_id))
    elif overall is not None:
        # No edge case to learn from yet: the candidate must at least beat the promoted model overall.
        name = f"regression mAP rises on {regression.label} (no edge-case set with boxes yet)"
        checks.append(_rises(name, *overall, rules.min_delta, promoted_id))
    return checks


def _class_checks(rules: GateRules, scored: ScoredSet, promoted_id: str) -> list[GateCheck]:
    checks: list[GateCheck] = []
    if scored.promoted is None:
        return checks
    for score in scored.candidate.classes:
        old = scored.promoted.score(score.name)
        support = score.support or 0
        if support < rules.min_class_support or score.ap is None or old.ap is None:
            continue
        name = f"{score.name} AP on {scored.label} ({support} boxes)"
        checks.append(_no_fall(name, score.ap, old.ap, rules.tolerance_of(score.name), promoted_id))
    return checks


def gate_checks(
    rules: GateRules, *, regression: ScoredSet, edge: ScoredSet | None, promoted_id: str
) -> list[GateCheck]:
    """Every check of the gate for a candidate against the promoted model ``promoted_id``."""
    checks = _map_checks(rules, regression, edge, promoted_id)
    for scored in (regression, edge):
        if scored is not None:
            checks += _class_checks(rules, scored, promoted_id)
    return checks


def verdict(checks: Sequence[GateCheck]) -> tuple[bool, str]:
    """Whether every check passed, and a reason that names the failed checks first, then the others."""
    failed = [c for c in checks if not c.passed]
    passed = [c for c in checks if c.passed]
    if failed:
        head = f"refused: {len(failed)} of {len(checks)} checks failed: " + "; ".join(
            c.detail for c in failed
        )
        tail = ("; passed: " + "; ".join(c.detail for c in passed)) if passed else ""
        return False, head + tail
    if not any(c.candidate is not None for c in checks):
        return False, "refused: nothing was measured (neither held-out set has ground truth)"
    return True, f"promoted: all {len(checks)} checks passed: " + "; ".join(c.detail for c in checks)
