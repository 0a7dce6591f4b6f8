"""The ensemble an autolabel run uses: configured members, minus the weak ones, weighted per class.

Weights come from the members' held-out evaluations in the lineage database (``models.metrics``,
written when a model is evaluated for promotion), so an ensemble is weighted by validation quality
without anyone copying numbers into the settings. ``autolabel_model_weights``, when set, wins: fixed
weights, every member kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dataengine.autolabel.members import (
    EnsemblePlan,
    MemberQuality,
    equal_plan,
    plan_ensemble,
    quality_from_metrics,
)
from dataengine.context import Context
from dataengine.lineage.model_registry import find_model

logger = logging.getLogger(__name__)


def member_quality(ctx: Context, model_ids: Sequence[str]) -> dict[str, MemberQuality | None]:
    """Each model's held-out quality from lineage, or None when it has none (never evaluated, or a model
    the lineage database does not know)."""
    found: dict[str, MemberQuality | None] = {}
    with ctx.db.session() as session:
        for model_id in model_ids:
            row = find_model(session, model_id)
            found[model_id] = quality_from_metrics(model_id, dict(row.metrics or {}) if row else {})
    return found


def ensemble_plan(
    ctx: Context,
    model_ids: Sequence[str],
    classes: Sequence[str],
    *,
    fixed_weights: Sequence[float] | None = None,
) -> EnsemblePlan:
    """The members to run and their weights per class (docs/autolabel.md, "Ensemble").

    One model: itself. Fixed weights (``autolabel_model_weights``, one per model id): every member with
    those weights. Otherwise
    the members' held-out AP per class, with members more than ``autolabel_drop_margin`` below the
    best mAP@0.5 left out; when a member has no held-out evaluation, or the members were scored on
    different held-out sets, every member counts alike and the plan's ``basis`` says why.
    """
    settings = ctx.settings
    if len(model_ids) == 1:
        return equal_plan(model_ids, classes, (1.0,), "one model")
    if fixed_weights:
        return equal_plan(model_ids, classes, fixed_weights, "autolabel_model_weights")
    quality = member_quality(ctx, model_ids)
    missing = [model_id for model_id, q in quality.items() if q is None]
    if missing:
        basis = f"equal weights: no held-out evaluation of {', '.join(missing)}"
        logger.warning("autolabel ensemble: %s", basis)
        return equal_plan(model_ids, classes, [1.0] * len(model_ids), basis)
    try:
        return plan_ensemble(
            [q for q in quality.values() if q is not None],
            classes,
            drop_margin=settings.autolabel_drop_margin,
        )
    except ValueError as exc:
        basis = f"equal weights: {exc}"
        logger.warning("autolabel ensemble: %s", basis)
        return equal_plan(model_ids, classes, [1.0] * len(model_ids), basis)
