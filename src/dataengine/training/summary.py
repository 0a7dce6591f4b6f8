"""The short report of one training round: the dataset diff, the metrics before and after, the decision."""

from __future__ import annotations

from typing import Any

from dataengine.context import Context
from dataengine.lineage.datasets import get_dataset
from dataengine.lineage.model_registry import get_model, models_trained_on
from dataengine.training.registry import DECIDED, metrics_key

#: Model statuses that mean a dataset version has had its round (trained and decided).
_DONE = DECIDED


def decided_model_for(ctx: Context, dataset_id: str) -> str | None:
    """A model trained on ``dataset_id`` whose promotion was already decided, if any."""
    with ctx.db.session() as session:
        decided = models_trained_on(session, dataset_id, statuses=_DONE)
    return decided[0] if decided else None


def _metric_line(label: str, model_id: str | None, metrics: dict[str, Any] | None) -> str:
    if not model_id or not metrics:
        return f"{label}: none"
    per_class = ", ".join(f"{name} {ap:.3f}" for name, ap in (metrics.get("per_class") or {}).items())
    return f"{label}: {model_id} mAP {metrics['map']:.3f} (mAP@.5 {metrics['map50']:.3f})" + (
        f"; per class {per_class}" if per_class else ""
    )


def summarise_round(ctx: Context, *, dataset_id: str, model_id: str) -> str:
    """A few lines for the run's log: what changed in the data, the scores before and after, the verdict."""
    name, _, version = dataset_id.rpartition("@")
    with ctx.db.session() as session:
        counts = get_dataset(session, name, int(version)).counts or {}
        status = get_model(session, model_id).status
    diff = counts.get("diff") or {}
    doc: dict[str, Any] = {}
    if ctx.store.exists(metrics_key(model_id)):
        doc = ctx.store.read_json(metrics_key(model_id))
    previous = doc.get("previous") or {}
    decision = doc.get("decision") or {}
    lines = [
        f"dataset {dataset_id}: {counts.get('n_clips', 0)} clips ({counts.get('n_train', 0)} train, "
        f"{counts.get('n_val', 0)} val), {counts.get('n_boxes', 0)} boxes; since "
        f"{diff.get('previous') or '(nothing)'}: +{diff.get('added', 0)} added, "
        f"-{diff.get('removed', 0)} removed, ~{diff.get('relabelled', 0)} relabelled",
        f"held-out set: {doc.get('held_out', counts.get('heldout') or 'none')}",
        _metric_line("before", previous.get("model_id"), previous.get("metrics")),
        _metric_line("after", model_id, doc.get("metrics")),
        f"decision: {model_id} {status}: {decision.get('reason', 'not decided yet')}",
    ]
    return "\n".join(lines)
