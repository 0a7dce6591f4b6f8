"""The short report of one training round: the dataset diff, both held-out sets before and after, the gate."""

from __future__ import annotations

from typing import Any

from dataengine.context import Context
from dataengine.lineage.datasets import get_dataset
from dataengine.lineage.model_registry import get_model, models_trained_on
from dataengine.training.comparison import CandidateComparison, PromotionDecision
from dataengine.training.gate import ScoredSet
from dataengine.training.metrics import Evaluation, format_map
from dataengine.training.registry import DECIDED, metrics_key

#: Model statuses that mean a dataset version has had its round (trained and decided).
_DONE = DECIDED


def decided_model_for(ctx: Context, dataset_id: str) -> str | None:
    """A model trained on ``dataset_id`` whose promotion was already decided, if any."""
    with ctx.db.session() as session:
        decided = models_trained_on(session, dataset_id, statuses=_DONE)
    return decided[0] if decided else None


def _metric_line(label: str, model_id: str | None, metrics: Evaluation | None) -> str:
    if not model_id or metrics is None:
        return f"{label}: none"
    per_class = ", ".join(score.text() for score in metrics.classes)
    return f"{label}: {model_id} mAP {format_map(metrics.map)} (mAP@.5 {format_map(metrics.map50)})" + (
        f"; per class {per_class}" if per_class else ""
    )


def _set_lines(kind: str, scored: ScoredSet | None, previous_id: str | None, model_id: str) -> list[str]:
    if scored is None:
        return [f"{kind}: none yet (no val clip came in through a trigger)"]
    return [
        f"{kind}: {scored.label}",
        _metric_line("  before", previous_id, scored.promoted),
        _metric_line("  after", model_id, scored.candidate),
    ]


def _decision_lines(model_id: str, status: str, doc: dict[str, Any]) -> list[str]:
    if not isinstance(doc.get("decision"), dict):
        return [f"decision: {model_id} {status}: not decided yet"]
    decision = PromotionDecision.from_dict(doc["decision"])
    failed = [c for c in decision.checks if not c.passed]
    if not decision.checks:
        verdict = decision.reason
    elif failed:
        verdict = f"refused: {len(failed)} of {len(decision.checks)} checks failed"
    else:
        verdict = f"promoted: all {len(decision.checks)} checks passed"
    lines = [f"decision: {model_id} {status}: {verdict}"]
    return lines + [f"  {'pass' if c.passed else 'FAIL'}  {c.detail}" for c in decision.checks]


def summarise_round(ctx: Context, *, dataset_id: str, model_id: str) -> str:
    """A few lines for the run's log: what changed in the data, both held-out sets' scores before and
    after, and the gate's checks."""
    name, _, version = dataset_id.rpartition("@")
    with ctx.db.session() as session:
        counts = get_dataset(session, name, int(version)).counts or {}
        status = get_model(session, model_id).status
    diff = counts.get("diff") or {}
    doc: dict[str, Any] = {}
    if ctx.store.exists(metrics_key(model_id)):
        doc = ctx.store.read_json(metrics_key(model_id))
    lines = [
        f"dataset {dataset_id}: {counts.get('n_clips', 0)} clips ({counts.get('n_train', 0)} train, "
        f"{counts.get('n_val', 0)} val), {counts.get('n_boxes', 0)} boxes; since "
        f"{diff.get('previous') or '(nothing)'}: +{diff.get('added', 0)} added, "
        f"-{diff.get('removed', 0)} removed, ~{diff.get('relabelled', 0)} relabelled",
    ]
    if "metrics" in doc:
        comparison = CandidateComparison.from_dict(doc)
        previous_id = comparison.promoted_model_id
        lines += _set_lines("regression set", comparison.regression, previous_id, model_id)
        lines += _set_lines("edge-case set", comparison.edge_case, previous_id, model_id)
    else:
        lines.append(
            f"held-out sets: {counts.get('heldout') or 'none'}, {counts.get('edge_cases') or 'none'}"
        )
    return "\n".join(lines + _decision_lines(model_id, status, doc))
