"""The model registry's promotion rule: a candidate replaces the promoted model only if it is better.

Both models are scored on the same held-out frames (the fixed held-out set of the candidate's dataset) in
the same task, so the comparison is fair even when the promoted model was trained on an older, smaller
dataset version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dataengine.context import Context
from dataengine.errors import TrainingError
from dataengine.lineage.clips import record_event
from dataengine.lineage.datasets import dataset_members
from dataengine.lineage.model_registry import get_model, promoted_model, set_model_status
from dataengine.training.evaluation import HELDOUT, evaluate
from dataengine.vision import model_prefix

DECIDED = ("promoted", "rejected", "retired")


@dataclass
class PromotionDecision:
    """What :func:`promote_if_better` decided for a candidate, with both scores (mAP@[.5:.95])."""

    model_id: str
    promoted: bool
    new_map: float
    previous_model_id: str | None
    previous_map: float | None
    held_out: str
    reason: str


def metrics_key(model_id: str) -> str:
    """The key of a model's ``metrics.json``."""
    return f"{model_prefix(model_id)}/metrics.json"


def _stored_decision(ctx: Context, model_id: str) -> PromotionDecision | None:
    key = metrics_key(model_id)
    if not ctx.store.exists(key):
        return None
    doc = ctx.store.read_json(key)
    decision = doc.get("decision") if isinstance(doc, dict) else None
    return PromotionDecision(**decision) if isinstance(decision, dict) else None


def _decide(
    new_map: float, previous_id: str | None, previous_map: float | None, delta: float
) -> tuple[bool, str]:
    if previous_id is None or previous_map is None:
        return True, "no model is promoted yet"
    if new_map > previous_map + delta:
        return True, f"mAP {new_map:.4f} beats {previous_id}'s {previous_map:.4f} by more than {delta}"
    return False, f"mAP {new_map:.4f} does not beat {previous_id}'s {previous_map:.4f} by more than {delta}"


def evaluation_key(model_id: str) -> str:
    """The key of a candidate's side-by-side evaluation against the promoted model."""
    return f"{model_prefix(model_id)}/evaluation.json"


def evaluate_candidate(ctx: Context, *, model_id: str) -> dict[str, Any]:
    """Score the candidate and the promoted model on the candidate dataset's held-out set, in one call.

    Both numbers come from the same frames in the same task, so they compare. The result is stored in
    ``models/{model_id}/evaluation.json`` for :func:`promote_if_better` and returned:
    ``{"model_id", "dataset_id", "held_out", "metrics", "previous": {"model_id", "metrics"}}``.
    """
    with ctx.db.session() as session:
        model = get_model(session, model_id)
        dataset_id = model.dataset_id
        current = promoted_model(session)
        previous_id = current.id if current is not None and current.id != model_id else None
    if dataset_id is None:
        raise TrainingError(f"model {model_id} names no dataset, so there is no held-out set to score it on")
    new = evaluate(ctx, model_id=model_id, dataset=dataset_id, split=HELDOUT)
    previous = evaluate(ctx, model_id=previous_id, dataset=dataset_id, split=HELDOUT) if previous_id else None
    doc: dict[str, Any] = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "held_out": new["held_out"],
        "metrics": new,
        "previous": {"model_id": previous_id, "metrics": previous},
    }
    ctx.store.write_json(evaluation_key(model_id), doc)
    return doc


def _comparison(ctx: Context, model_id: str, previous_id: str | None) -> dict[str, Any]:
    """The stored comparison when it was made against today's promoted model, else a new one."""
    key = evaluation_key(model_id)
    if ctx.store.exists(key):
        doc: dict[str, Any] = ctx.store.read_json(key)
        if doc.get("previous", {}).get("model_id") == previous_id:
            return doc
    return evaluate_candidate(ctx, model_id=model_id)


def promote_if_better(ctx: Context, *, model_id: str) -> PromotionDecision:
    """Promote the candidate if it beats the promoted model on one held-out set, else reject it.

    Uses the comparison :func:`evaluate_candidate` stored (or makes it), writes
    ``models/{model_id}/metrics.json``, stores the metrics on the model row and records a ``trained``
    event on every clip of the candidate's dataset. A model decided before returns that decision again,
    with no new evaluation, rows or events.
    """
    with ctx.db.session() as session:
        model = get_model(session, model_id)
        status, dataset_id = model.status, model.dataset_id
        current = promoted_model(session)
        previous_id = current.id if current is not None and current.id != model_id else None
    if status in DECIDED:
        stored = _stored_decision(ctx, model_id)
        if stored is not None:
            return stored
    if dataset_id is None:
        raise TrainingError(f"model {model_id} names no dataset, so there is no held-out set to score it on")
    doc = _comparison(ctx, model_id, previous_id)
    new, previous = doc["metrics"], doc["previous"]["metrics"]
    previous_map = previous["map"] if previous else None
    promoted, reason = _decide(new["map"], previous_id, previous_map, ctx.settings.promote_min_delta)
    if doc["held_out"].endswith(":all"):
        reason += f" (dataset {dataset_id} has no held-out set, so all its frames were used)"
    decision = PromotionDecision(
        model_id=model_id, promoted=promoted, new_map=new["map"], previous_model_id=previous_id,
        previous_map=previous_map, held_out=doc["held_out"], reason=reason,
    )  # fmt: skip
    _record(ctx, decision, dataset_id, new, previous)
    return decision


def _record(
    ctx: Context,
    decision: PromotionDecision,
    dataset_id: str,
    new: dict[str, Any],
    previous: dict[str, Any] | None,
) -> None:
    """metrics.json, the model's status and metrics, and one event per clip, in one transaction."""
    doc: dict[str, Any] = {
        "model_id": decision.model_id,
        "dataset_id": dataset_id,
        "held_out": decision.held_out,
        "metrics": new,
        "previous": {"model_id": decision.previous_model_id, "metrics": previous},
        "decision": asdict(decision),
    }
    ctx.store.write_json(metrics_key(decision.model_id), doc)
    with ctx.db.session() as session:
        model = get_model(session, decision.model_id)
        metrics = {
            **(model.metrics or {}),
            "eval": new,
            "held_out": decision.held_out,
            "decision": decision.reason,
        }
        status = "promoted" if decision.promoted else "rejected"
        set_model_status(session, decision.model_id, status, metrics=metrics)
        details = {"model_id": decision.model_id, "promoted": decision.promoted, "dataset_id": dataset_id}
        for member in dataset_members(session, dataset_id):
            record_event(
                session, member.clip_id, "in_dataset", status="trained",
                run_id=ctx.run_id, actor=ctx.actor, details=details,
            )  # fmt: skip
