"""The model registry's promotion rule: a candidate replaces the promoted model only if the gate says so.

Both models are scored on the same frames of both held-out sets of the candidate's dataset (the frozen
regression set and the edge-case set) in the same task, so the comparison is fair even when the promoted
model was trained on an older, smaller dataset version. The gate itself is :mod:`training.gate`.
"""

from __future__ import annotations

from typing import Any

from dataengine.context import Context
from dataengine.errors import TrainingError
from dataengine.lineage.clips import record_event
from dataengine.lineage.datasets import dataset_members, get_dataset
from dataengine.lineage.model_registry import get_model, promoted_model, set_model_status
from dataengine.training.comparison import CandidateComparison, PromotionDecision
from dataengine.training.evaluation import EDGE_CASES, HELDOUT, evaluate
from dataengine.training.gate import GateCheck, GateRules, ScoredSet, gate_checks, verdict
from dataengine.vision import model_prefix

DECIDED = ("promoted", "rejected", "retired")
__all__ = ["DECIDED", "CandidateComparison", "PromotionDecision", "evaluate_candidate", "promote_if_better"]


def metrics_key(model_id: str) -> str:
    """The key of a model's ``metrics.json``."""
    return f"{model_prefix(model_id)}/metrics.json"


def _stored_decision(ctx: Context, model_id: str) -> PromotionDecision | None:
    key = metrics_key(model_id)
    if not ctx.store.exists(key):
        return None
    doc = ctx.store.read_json(key)
    decision = doc.get("decision") if isinstance(doc, dict) else None
    return PromotionDecision.from_dict(decision) if isinstance(decision, dict) else None


def evaluation_key(model_id: str) -> str:
    """The key of a candidate's side-by-side evaluation against the promoted model."""
    return f"{model_prefix(model_id)}/evaluation.json"


def _scored(ctx: Context, model_id: str, previous_id: str | None, dataset_id: str, split: str) -> ScoredSet:
    new = evaluate(ctx, model_id=model_id, dataset=dataset_id, split=split)
    previous = evaluate(ctx, model_id=previous_id, dataset=dataset_id, split=split) if previous_id else None
    return ScoredSet(new.held_out, new, previous)


def evaluate_candidate(ctx: Context, *, model_id: str, dataset_id: str | None = None) -> CandidateComparison:
    """Score the candidate and the promoted model on both held-out sets of the candidate's dataset.

    Both models see the same frames in the same task, so the numbers compare. ``dataset_id`` names the
    dataset to judge on when the candidate was trained on none (an imported model). The result is
    stored in ``models/{model_id}/evaluation.json`` for :func:`promote_if_better` and returned.
    """
    with ctx.db.session() as session:
        model = get_model(session, model_id)
        dataset_id = model.dataset_id or dataset_id
        current = promoted_model(session)
        previous_id = current.id if current is not None and current.id != model_id else None
        name, _, version = (dataset_id or "").rpartition("@")
        counts = get_dataset(session, name, int(version)).counts or {} if dataset_id else {}
    if dataset_id is None:
        raise TrainingError(f"model {model_id} names no dataset, so there is no held-out set to score it on")
    comparison = CandidateComparison(
        model_id=model_id,
        dataset_id=dataset_id,
        promoted_model_id=previous_id,
        regression=_scored(ctx, model_id, previous_id, dataset_id, HELDOUT),
        edge_case=_scored(ctx, model_id, previous_id, dataset_id, EDGE_CASES)
        if counts.get("edge_cases")
        else None,
    )
    ctx.store.write_json(evaluation_key(model_id), comparison.to_dict())
    return comparison


def _comparison(ctx: Context, model_id: str, previous_id: str | None, dataset_id: str) -> CandidateComparison:
    """The stored comparison when it was made against today's promoted model, else a new one."""
    key = evaluation_key(model_id)
    if ctx.store.exists(key):
        doc: dict[str, Any] = ctx.store.read_json(key)
        # A record from before the edge-case set existed has no "edge_case" key: measure again.
        same = (doc.get("previous") or {}).get("model_id") == previous_id and doc.get(
            "dataset_id"
        ) == dataset_id
        if "edge_case" in doc and same:
            return CandidateComparison.from_dict(doc)
    return evaluate_candidate(ctx, model_id=model_id, dataset_id=dataset_id)


def _decide(ctx: Context, comparison: CandidateComparison) -> tuple[bool, str, tuple[GateCheck, ...]]:
    promoted_id = comparison.promoted_model_id
    if promoted_id is None:
        return True, "no model is promoted yet", ()
    checks = gate_checks(
        GateRules.from_settings(ctx.settings),
        regression=comparison.regression,
        edge=comparison.edge_case,
        promoted_id=promoted_id,
    )
    promoted, reason = verdict(checks)
    return promoted, reason, tuple(checks)


def _decision(ctx: Context, comparison: CandidateComparison) -> PromotionDecision:
    promoted, reason, checks = _decide(ctx, comparison)
    if comparison.held_out.endswith(":all"):
        reason += f" (dataset {comparison.dataset_id} has no held-out set, so all its frames were used)"
    regression, edge = comparison.regression, comparison.edge_case
    return PromotionDecision(
        model_id=comparison.model_id,
        promoted=promoted,
        new_map=regression.candidate.map,
        previous_model_id=comparison.promoted_model_id,
        previous_map=regression.promoted.map if regression.promoted else None,
        held_out=comparison.held_out,
        reason=reason,
        edge_case=edge.label if edge else None,
        new_edge_map=edge.candidate.map if edge else None,
        previous_edge_map=edge.promoted.map if edge and edge.promoted else None,
        checks=checks,
    )


def promote_if_better(ctx: Context, *, model_id: str, dataset_id: str | None = None) -> PromotionDecision:
    """Promote the candidate if it passes the gate against the promoted model, else reject it.

    Uses the comparison :func:`evaluate_candidate` stored (or makes it), writes
    ``models/{model_id}/metrics.json``, stores the metrics on the model row and records a ``trained``
    event on every clip of the candidate's dataset. ``dataset_id`` is the dataset to judge on when the
    candidate was trained on none (an imported model). A model decided before returns that decision
    again, with no new evaluation, rows or events.
    """
    with ctx.db.session() as session:
        model = get_model(session, model_id)
        status, dataset_id = model.status, model.dataset_id or dataset_id
        current = promoted_model(session)
        previous_id = current.id if current is not None and current.id != model_id else None
    if status in DECIDED:
        stored = _stored_decision(ctx, model_id)
        if stored is not None:
            return stored
    if dataset_id is None:
        raise TrainingError(f"model {model_id} names no dataset, so there is no held-out set to score it on")
    comparison = _comparison(ctx, model_id, previous_id, dataset_id)
    decision = _decision(ctx, comparison)
    _record(ctx, decision, comparison)
    return decision


def _record(ctx: Context, decision: PromotionDecision, comparison: CandidateComparison) -> None:
    """metrics.json, the model's status and metrics, and one event per clip, in one transaction."""
    doc = {**comparison.to_dict(), "decision": decision.to_dict()}
    ctx.store.write_json(metrics_key(decision.model_id), doc)
    edge = comparison.edge_case
    dataset_id = comparison.dataset_id
    with ctx.db.session() as session:
        model = get_model(session, decision.model_id)
        metrics = {
            **(model.metrics or {}),
            "eval": comparison.regression.candidate.to_dict(),
            "held_out": decision.held_out,
            "edge_eval": edge.candidate.to_dict() if edge else None,
            "edge_case": decision.edge_case,
            # The promoted model on the same edge-case frames: its own record may predate any edge-case
            # set (the bootstrap's does), and the Models page shows it from here.
            "promoted_model_id": comparison.promoted_model_id,
            "promoted_edge_eval": edge.promoted.to_dict() if edge and edge.promoted else None,
            "decision": decision.reason,
            "gate": {"promoted": decision.promoted, "checks": [c.to_dict() for c in decision.checks]},
        }
        status = "promoted" if decision.promoted else "rejected"
        set_model_status(session, decision.model_id, status, metrics=metrics)
        details = {"model_id": decision.model_id, "promoted": decision.promoted, "dataset_id": dataset_id}
        for member in dataset_members(session, dataset_id):
            record_event(
                session, member.clip_id, "in_dataset", status="trained",
                run_id=ctx.run_id, actor=ctx.actor, details=details,
            )  # fmt: skip
