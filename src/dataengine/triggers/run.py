"""``run_triggers``: score every newly ingested clip, then select the most interesting under a budget."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from dataengine import clips
from dataengine.context import Context
from dataengine.errors import InputRejectedError, ModelError, NotFoundError
from dataengine.lineage import repository
from dataengine.lineage.models import Clip
from dataengine.storage import ObjectStore
from dataengine.triggers.base import ClipFrames, Trigger, TriggerInputs, TriggerRegistry, TriggerResult
from dataengine.triggers.builtin import TRIGGERS
from dataengine.triggers.selection import RankedClip, budget_size, select_under_budget
from dataengine.vision import Detections, Detector, load_detector

logger = logging.getLogger(__name__)

NO_MODEL_MESSAGE = "no promoted model yet: train one with `dataengine train`"
#: The stage name recorded on quarantine rows this package writes.
QUARANTINE_STAGE = "triggers"


@dataclass
class TriggerReport:
    """What a trigger run did. ``scores`` maps clip id to trigger name to score."""

    scored: list[str]
    selected: list[str]
    rejected: list[str]
    skipped_triggers: dict[str, str]
    scores: dict[str, dict[str, float]]
    model_id: str | None
    #: Clips whose frames could not be read, with the reason; they are in stage ``quarantined``.
    quarantined: dict[str, str] = field(default_factory=dict)
    #: How many clips the budget allowed to select.
    budget: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for ``--json`` output and XCom)."""
        return asdict(self)

    def summary(self) -> str:
        """A short human summary."""
        lines = [
            f"scored {len(self.scored)} clip(s) with model {self.model_id or '(none)'}; "
            f"selected {len(self.selected)} (budget {self.budget}), rejected {len(self.rejected)}"
        ]
        lines += [f"skipped trigger {name}: {why}" for name, why in self.skipped_triggers.items()]
        lines += [f"quarantined {clip_id}: {why}" for clip_id, why in self.quarantined.items()]
        return "\n".join(lines)


@dataclass
class _Models:
    """The detectors of a run, and the triggers it skips for want of one."""

    model_id: str | None = None
    promoted: Detector | None = None
    previous: Detector | None = None
    skipped: dict[str, str] = field(default_factory=dict)


def load_clip_frames(store: ObjectStore, clip_id: str) -> ClipFrames:
    """A clip's sampled frames; an unreadable ``meta.json`` or frame is an :class:`InputRejectedError`."""
    indices, frames = clips.read_sampled_frames(store, clip_id)
    return ClipFrames(clip_id=clip_id, indices=indices, frames=frames)


def _load_models(ctx: Context, triggers: Sequence[Trigger], *, load_detectors: bool) -> _Models:
    """The promoted (and previous) detector, if a trigger needs them; ``load_detectors=False`` (nothing
    to score) only looks up which model is promoted."""
    models = _Models()
    if not any(t.needs_model for t in triggers):
        return models
    with ctx.db.session() as session:
        promoted = repository.promoted_model(session)
        parent_id = promoted.parent_model_id if promoted else None
        parent_known = parent_id is not None and _model_exists(session, parent_id)
    if promoted is None:
        models.skipped = {t.name: NO_MODEL_MESSAGE for t in triggers if t.needs_model}
        return models
    models.model_id = promoted.id
    if not load_detectors:
        return models
    models.promoted = load_detector(ctx.store, promoted.id, device=ctx.settings.device)
    if any(t.needs_previous_model for t in triggers):
        models.previous, why = _load_previous(ctx, promoted.id, parent_id, parent_known=parent_known)
        if models.previous is None:
            models.skipped.update({t.name: why for t in triggers if t.needs_previous_model})
    return models


def _model_exists(session: Session, model_id: str) -> bool:
    try:
        repository.get_model(session, model_id)
    except NotFoundError:
        return False
    return True


def _load_previous(
    ctx: Context, model_id: str, parent_id: str | None, *, parent_known: bool
) -> tuple[Detector | None, str]:
    if parent_id is None:
        return None, f"the promoted model {model_id} has no previous model to compare with"
    if not parent_known:
        return None, f"the previous model {parent_id} of {model_id} is not in the lineage database"
    try:
        return load_detector(ctx.store, parent_id, device=ctx.settings.device), ""
    except ModelError as exc:
        return None, f"the previous model {parent_id} has no usable checkpoint: {exc}"


def _remap_labels(detections: Detections, source: Sequence[str], target: Sequence[str]) -> Detections:
    """Detections whose labels index ``target`` instead of ``source``; unknown classes get -1."""
    if list(source) == list(target):
        return detections
    lookup = np.array([target.index(name) if name in target else -1 for name in source], dtype=np.int64)
    return Detections(detections.boxes_xyxy, detections.scores, lookup[detections.labels])


def _score_clip(
    ctx: Context, frames: ClipFrames, triggers: Sequence[Trigger], models: _Models, *, batch_size: int
) -> dict[str, TriggerResult]:
    """Every trigger's result on one clip; each model runs once over the frames, whatever reads it."""
    threshold = ctx.settings.score_threshold
    detections = previous = None
    if models.promoted is not None and any(t.needs_model for t in triggers):
        detections = models.promoted.predict(frames.frames, batch_size=batch_size, score_threshold=threshold)
    if (
        models.previous is not None
        and models.promoted is not None
        and any(t.needs_previous_model for t in triggers)
    ):
        raw = models.previous.predict(frames.frames, batch_size=batch_size, score_threshold=threshold)
        previous = [_remap_labels(d, models.previous.classes, models.promoted.classes) for d in raw]
    inputs = TriggerInputs(
        clip=frames,
        detections=detections,
        previous_detections=previous,
        model_id=models.model_id,
        previous_model_id=models.previous.model_id if models.previous else None,
    )
    return {t.name: t.compute(inputs) for t in triggers}


def _record_scores(
    ctx: Context,
    clip_id: str,
    results: dict[str, TriggerResult],
    triggers: Sequence[Trigger],
    models: _Models,
) -> bool:
    """Store the scores and move the clip to ``scored``; False if another run moved it meanwhile."""
    needs_model = {t.name: t.needs_model for t in triggers}
    with ctx.db.session() as session:
        if repository.get_clip(session, clip_id).stage != "ingested":
            return False
        for name, result in results.items():
            repository.record_trigger_score(
                session,
                clip_id=clip_id,
                trigger=name,
                score=result.score,
                frames=result.frames,
                model_id=models.model_id if needs_model[name] else None,
                run_id=ctx.run_id,
                details=result.details,
            )
        details = {
            "scores": {name: result.score for name, result in results.items()},
            "model_id": models.model_id,
            "skipped_triggers": sorted(models.skipped),
        }
        repository.set_stage(session, clip_id, "scored", run_id=ctx.run_id, actor=ctx.actor, details=details)
    return True


def _quarantine(ctx: Context, clip: Clip, error: InputRejectedError) -> None:
    logger.warning("quarantining clip %s: %s", clip.id, error)
    with ctx.db.session() as session:
        repository.quarantine(
            session,
            kind="clip",
            input=error.input,
            reason=error.reason,
            stage=QUARANTINE_STAGE,
            video_id=clip.video_id,
            clip_id=clip.id,
            run_id=ctx.run_id,
        )


def _clips_to_score(ctx: Context, clip_ids: Sequence[str] | None) -> list[Clip]:
    """The clips in stage ``ingested`` (only the named ones, if named; unknown names are an error)."""
    with ctx.db.session() as session:
        if clip_ids is None:
            return repository.list_clips(session, stage="ingested")
        found = repository.list_clips(session, clip_ids=clip_ids)
    unknown = sorted(set(clip_ids) - {clip.id for clip in found})
    if unknown:
        raise NotFoundError(
            f"no clip(s) {', '.join(unknown)} in the lineage database; see `dataengine clips list`"
        )
    passed = [clip.id for clip in found if clip.stage != "ingested"]
    if passed:
        logger.info("not scoring %d named clip(s) past stage ingested: %s", len(passed), ", ".join(passed))
    return [clip for clip in found if clip.stage == "ingested"]


def _stored_scores(session: Session, clip_id: str) -> dict[str, float]:
    """The newest score of each trigger on a clip, as the lineage database holds them."""
    rows = sorted(repository.trigger_scores(session, clip_id), key=lambda row: (row.created_at, row.id))
    return {row.trigger: float(row.score) for row in rows}


def _selection_details(ranked: RankedClip, *, k: int, n_candidates: int) -> dict[str, Any]:
    return {
        "trigger": ranked.trigger,
        "score": ranked.score,
        "rank": ranked.rank,
        "budget": k,
        "candidates": n_candidates,
    }


def _select(
    ctx: Context,
    fresh: dict[str, dict[str, float]],
    *,
    clip_ids: Sequence[str] | None,
    fraction: float | None,
    count: int | None,
    order: Sequence[str],
) -> tuple[list[RankedClip], list[RankedClip], int]:
    """Select among every clip in stage ``scored``: this run's, and any an interrupted run left behind."""
    with ctx.db.session() as session:
        pool = [clip.id for clip in repository.list_clips(session, stage="scored", clip_ids=clip_ids)]
        scores = {cid: fresh[cid] if cid in fresh else _stored_scores(session, cid) for cid in pool}
        k = budget_size(len(scores), fraction=fraction, count=count)
        selected, rejected = select_under_budget(scores, k=k, trigger_order=order)
        for stage, group in (("selected", selected), ("rejected", rejected)):
            for ranked in group:
                details = _selection_details(ranked, k=k, n_candidates=len(scores))
                repository.set_stage(
                    session, ranked.clip_id, stage, run_id=ctx.run_id, actor=ctx.actor, details=details
                )
    return selected, rejected, k


def run_triggers(
    ctx: Context,
    *,
    budget_fraction: float | None = None,
    budget_count: int | None = None,
    clip_ids: Sequence[str] | None = None,
    triggers: Sequence[str] | None = None,
    batch_size: int = 8,
    registry: TriggerRegistry | None = None,
) -> TriggerReport:
    """Score the clips in stage ``ingested`` (or the named ones) and select the best under the budget.

    ``budget_count`` wins over ``budget_fraction``; with neither, the settings' budget applies. Triggers
    that need a model are skipped, with the reason in the report, when none is promoted. A clip whose
    frames cannot be read is quarantined and the others go on.
    """
    chosen = (registry or TRIGGERS).select(triggers)
    if budget_fraction is None and budget_count is None:
        budget_fraction, budget_count = ctx.settings.budget_fraction, ctx.settings.budget_count
    todo = _clips_to_score(ctx, clip_ids)
    models = _load_models(ctx, chosen, load_detectors=bool(todo))
    for name, why in models.skipped.items():
        logger.warning("trigger %s skipped: %s", name, why)
    active = [t for t in chosen if t.name not in models.skipped]
    report = TriggerReport([], [], [], dict(models.skipped), {}, models.model_id)
    for clip in todo:
        try:
            frames = load_clip_frames(ctx.store, clip.id)
        except InputRejectedError as exc:
            _quarantine(ctx, clip, exc)
            report.quarantined[clip.id] = exc.reason
            continue
        results = _score_clip(ctx, frames, active, models, batch_size=batch_size)
        if _record_scores(ctx, clip.id, results, active, models):
            report.scored.append(clip.id)
            report.scores[clip.id] = {name: result.score for name, result in results.items()}
    selected, rejected, report.budget = _select(
        ctx,
        report.scores,
        clip_ids=clip_ids,
        fraction=budget_fraction,
        count=budget_count,
        order=[t.name for t in chosen],
    )
    report.selected = [r.clip_id for r in selected]
    report.rejected = [r.clip_id for r in rejected]
    logger.info("%s", report.summary())
    return report
