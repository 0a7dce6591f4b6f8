"""``run_triggers``: score every newly ingested clip, then select the most interesting under a budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from dataengine import clips
from dataengine.context import Context
from dataengine.errors import InputRejectedError, NotFoundError, RetryableLineageError
from dataengine.lineage import Clip, Session
from dataengine.lineage.clips import ClipChange, get_clip, list_clips, set_stage, set_stages
from dataengine.lineage.quarantine import quarantine
from dataengine.lineage.triggers import record_trigger_score, trigger_scores
from dataengine.lineage.videos import cameras_of
from dataengine.storage import ObjectStore
from dataengine.triggers.anomaly import AnomalyModel
from dataengine.triggers.base import (
    AnomalyFunction,
    ClipFrames,
    Trigger,
    TriggerInputs,
    TriggerRegistry,
    TriggerResult,
)
from dataengine.triggers.builtin import TRIGGERS, chunk_caches, chunk_results
from dataengine.triggers.loading import RunModels, load_models
from dataengine.triggers.selection import Candidate, Decision, select
from dataengine.vision import Detections
from dataengine.vision.detection_cache import ClipBatchItem, detect_clips

logger = logging.getLogger(__name__)

# How long a run waits for another triggers run (scoring a big batch takes minutes).
_RUN_WAIT_SECONDS = 1800.0
T = TypeVar("T")

#: The stage name recorded on quarantine rows this package writes.
QUARANTINE_STAGE = "triggers"
#: Clips are scored in chunks of at most this many bytes of sampled frames (the frames held in memory):
#: small frames go many clips to a chunk, so per-chunk work (stacked statistics, the autoencoder's
#: batches) is shared widely; large frames go few.
CHUNK_BYTES = 256 * 2**20
#: ... and of at most this many clips.
MAX_CLIPS_PER_CHUNK = 256


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
    #: Why each candidate was selected or rejected.
    reasons: dict[str, str] = field(default_factory=dict)
    #: Wall seconds spent reading frames, in detector inference and in the triggers themselves.
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for ``--json`` output and XCom)."""
        return asdict(self)

    def summary(self) -> str:
        """A short human summary."""
        lines = [
            f"scored {len(self.scored)} clip(s) with model {self.model_id or '(none)'}; "
            f"selected {len(self.selected)} (budget {self.budget}), rejected {len(self.rejected)}"
        ]
        lines += [f"selected {clip_id}: {self.reasons.get(clip_id, '')}" for clip_id in self.selected]
        lines += [f"skipped trigger {name}: {why}" for name, why in self.skipped_triggers.items()]
        lines += [f"quarantined {clip_id}: {why}" for clip_id, why in self.quarantined.items()]
        return "\n".join(lines)


def load_clip_frames(store: ObjectStore, clip_id: str, video_id: str | None = None) -> ClipFrames:
    """A clip's sampled frames; an unreadable ``meta.json`` or frame is an :class:`InputRejectedError`."""
    indices, frames = clips.read_sampled_frames(store, clip_id)
    return ClipFrames(clip_id=clip_id, indices=indices, frames=frames, video_id=video_id)


def frame_bytes(clip: ClipFrames) -> int:
    """The memory a clip's sampled frames take."""
    return sum(int(frame.nbytes) for frame in clip.frames)


def chunked(
    items: Iterable[T],
    size: Callable[[T], int],
    *,
    max_bytes: int = CHUNK_BYTES,
    max_items: int = MAX_CLIPS_PER_CHUNK,
) -> Iterator[list[T]]:
    """``items`` in order, in lists that end once they reach ``max_bytes`` (by ``size``) or hold
    ``max_items``; every list holds at least one item."""
    chunk: list[T] = []
    total = 0
    for item in items:
        chunk.append(item)
        total += size(item)
        if total >= max_bytes or len(chunk) >= max_items:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def remap_labels(detections: Detections, source: Sequence[str], target: Sequence[str]) -> Detections:
    """Detections whose labels index ``target`` instead of ``source``; unknown classes get -1."""
    if list(source) == list(target):
        return detections
    lookup = np.array([target.index(name) if name in target else -1 for name in source], dtype=np.int64)
    return Detections(detections.boxes_xyxy, detections.scores, lookup[detections.labels])


def score_clip(inputs: TriggerInputs, triggers: Sequence[Trigger]) -> dict[str, TriggerResult]:
    """Every trigger's result on one clip, in the order given."""
    return {t.name: t.compute(inputs) for t in triggers}


def score_chunk(
    inputs: Sequence[TriggerInputs], triggers: Sequence[Trigger]
) -> list[dict[str, TriggerResult]]:
    """:func:`score_clip` of every clip of a chunk, with the same results: the built-in detection
    triggers run on all clips at once (:func:`~dataengine.triggers.builtin.chunk_results`), every other
    trigger clip by clip."""
    done = chunk_results(inputs, triggers)
    return [
        {t.name: known[t.name] if t.name in known else t.compute(clip) for t in triggers}
        for clip, known in zip(inputs, done, strict=True)
    ]


def _detect(
    ctx: Context,
    chunk: Sequence[ClipFrames],
    models: RunModels,
    triggers: Sequence[Trigger],
    *,
    batch_size: int,
) -> tuple[dict[str, list[Detections]], dict[str, list[Detections]]]:
    """The promoted and reference detections of a chunk of clips: cached, or one batched pass each."""
    items = [ClipBatchItem(c.clip_id, c.indices, c.frames) for c in chunk]
    floor = ctx.settings.trigger_candidate_threshold
    promoted: dict[str, list[Detections]] = {}
    reference: dict[str, list[Detections]] = {}
    if models.promoted is not None and any(t.needs_model for t in triggers):
        promoted = detect_clips(ctx.store, models.promoted, items, batch_size=batch_size, min_score=floor)
    if models.reference is not None and models.promoted is not None:
        raw = detect_clips(ctx.store, models.reference, items, batch_size=batch_size, min_score=floor)
        source, target = models.reference.classes, models.promoted.classes
        reference = {cid: [remap_labels(d, source, target) for d in dets] for cid, dets in raw.items()}
    return promoted, reference


def _record_scores(
    ctx: Context,
    clip_id: str,
    results: dict[str, TriggerResult],
    triggers: Sequence[Trigger],
    models: RunModels,
) -> bool:
    """Store the scores and move the clip to ``scored``; False if another run moved it meanwhile."""
    by_name = {t.name: t for t in triggers}
    with ctx.db.session() as session:
        if get_clip(session, clip_id).stage != "ingested":
            return False
        for name, result in results.items():
            trigger = by_name[name]
            model_id = models.model_id if trigger.needs_model else None
            if trigger.needs_anomaly_model and models.anomaly is not None:
                model_id = models.anomaly.model_id
            details = dict(result.details)
            if trigger.needs_previous_model:
                details["reference_model_id"] = models.reference_model_id
            record_trigger_score(
                session,
                clip_id=clip_id,
                trigger=name,
                score=result.score,
                frames=result.frames,
                model_id=model_id,
                run_id=ctx.run_id,
                details=details,
            )
        details = {
            "scores": {name: round(result.score, 6) for name, result in results.items()},
            "frames": {name: result.frames for name, result in results.items() if result.frames},
            "model_id": models.model_id,
            "reference_model_id": models.reference_model_id,
            "anomaly_model_id": models.anomaly.model_id if models.anomaly else None,
            "skipped_triggers": sorted(models.skipped),
        }
        set_stage(session, clip_id, "scored", run_id=ctx.run_id, actor=ctx.actor, details=details)
    return True


def _quarantine(ctx: Context, clip: Clip, error: InputRejectedError) -> None:
    logger.warning("quarantining clip %s: %s", clip.id, error)
    with ctx.db.session() as session:
        quarantine(
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
            return list_clips(session, stage="ingested")
        found = list_clips(session, clip_ids=clip_ids)
    unknown = sorted(set(clip_ids) - {clip.id for clip in found})
    if unknown:
        raise NotFoundError(
            f"no clip(s) {', '.join(unknown)} in the lineage database; see `dataengine clips list`"
        )
    passed = [clip.id for clip in found if clip.stage != "ingested"]
    if passed:
        logger.info("not scoring %d named clip(s) past stage ingested: %s", len(passed), ", ".join(passed))
    return [clip for clip in found if clip.stage == "ingested"]


def stored_scores(session: Session, clip_id: str) -> dict[str, float]:
    """The newest score of each trigger on a clip, as the lineage database holds them."""
    rows = sorted(trigger_scores(session, clip_id), key=lambda row: (row.created_at, row.id))
    return {row.trigger: float(row.score) for row in rows}


def _decision_details(decision: Decision, *, k: int, n: int, ctx: Context) -> dict[str, Any]:
    return {
        "decision": "selected" if decision.selected else "rejected",
        "reason": decision.reason,
        "trigger": decision.trigger,
        "score": decision.combined,
        "trigger_score": decision.trigger_score,
        "weighted_scores": decision.weighted,
        "tie_break": decision.tie_break,
        "rank": decision.rank,
        "budget": k,
        "candidates": n,
        "combine": ctx.settings.trigger_combine,
        "calibration": ctx.settings.trigger_calibration,
        "calibrated_score": decision.calibrated,
        "surprise": decision.surprise,
    }


def _reason(decision: Decision) -> str:
    """The one-line reason of a decision: the budget's verdict, then the trigger that weighed most."""
    text = f"{decision.reason}; strongest trigger {decision.trigger} {decision.trigger_score:.3f}"
    if decision.calibrated is not None and decision.trigger is not None:
        surprise = decision.surprise.get(decision.trigger, 0.0)
        text += f" (surprise {surprise:.2f} among the candidates)"
    return text


def _select(
    ctx: Context,
    fresh: dict[str, dict[str, float]],
    *,
    clip_ids: Sequence[str] | None,
    fraction: float | None,
    count: int | None,
    order: Sequence[str],
) -> tuple[list[Decision], int]:
    """Decide among every clip in stage ``scored``: this run's, and any an interrupted run left behind."""
    s = ctx.settings
    with ctx.db.session() as session:
        pool = list_clips(session, stage="scored", clip_ids=clip_ids)
        cameras = cameras_of(session, {c.video_id for c in pool})
        candidates = [
            Candidate(
                c.id,
                fresh[c.id] if c.id in fresh else stored_scores(session, c.id),
                c.video_id,
                cameras.get(c.video_id),
            )
            for c in pool
        ]
        decisions, k = select(
            candidates, fraction=fraction, count=count, weights=s.trigger_weights, mode=s.trigger_combine,
            max_video_share=s.selection_max_video_share, max_camera_share=s.selection_max_camera_share,
            trigger_order=order, fire_threshold=s.trigger_score_threshold,
            calibration=s.trigger_calibration,
        )  # fmt: skip
        # One bulk write for the whole selection: per clip it was three round trips per decision.
        changes = [
            ClipChange(
                decision.clip_id,
                "selected" if decision.selected else "rejected",
                _decision_details(decision, k=k, n=len(candidates), ctx=ctx),
            )
            for decision in decisions
        ]
        set_stages(session, changes, run_id=ctx.run_id, actor=ctx.actor)
    return decisions, k


def _read_clips(
    ctx: Context, clips_: Sequence[Clip], report: TriggerReport, timings: dict[str, float]
) -> Iterator[ClipFrames]:
    """Each readable clip's sampled frames, in order; an unreadable clip is quarantined and skipped."""
    for clip in clips_:
        began = time.perf_counter()
        try:
            frames = load_clip_frames(ctx.store, clip.id, clip.video_id)
        except InputRejectedError as exc:
            _quarantine(ctx, clip, exc)
            report.quarantined[clip.id] = exc.reason
            continue
        finally:
            timings["read_frames"] += time.perf_counter() - began
        yield frames


def _lookup(results: dict[str, TriggerResult]) -> AnomalyFunction:
    """A clip's precomputed anomaly result, as the trigger's function of the clip."""
    return lambda clip: results[clip.clip_id]


def anomaly_in_background(
    pool: Executor, model: AnomalyModel, chunk: Sequence[ClipFrames]
) -> tuple[AnomalyFunction, Future[dict[str, TriggerResult]]]:
    """``model.score_many(chunk)`` started on ``pool``, and the anomaly trigger's function that waits for
    it: the autoencoder (torch, on one thread) then runs beside the other triggers' work on the chunk
    (numpy and compiled code) on a second core, with the same results. Wait for the future before
    the next torch call of the caller's: torch's thread count is the process's."""
    future = pool.submit(model.score_many, chunk)
    return (lambda clip: future.result()[clip.clip_id]), future


def class_prior_of(classes: Sequence[str], boxes: dict[str, int] | None) -> list[float] | None:
    """The training box counts of a detector's ``classes``, by label index (0 for a class not counted)."""
    if boxes is None:
        return None
    return [float(boxes.get(name, 0)) for name in classes]


def _score_all(
    ctx: Context, todo: Sequence[Clip], active: Sequence[Trigger], models: RunModels, report: TriggerReport,
    *, batch_size: int,
) -> None:  # fmt: skip
    timings = {"read_frames": 0.0, "detector": 0.0, "triggers": 0.0}
    classes = list(models.promoted.classes) if models.promoted is not None else None
    prior = class_prior_of(classes, models.class_prior) if classes is not None else None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomaly") as pool:
        _score_chunks(ctx, todo, active, models, report, timings, prior, classes, pool, batch_size=batch_size)
    report.timings = {k: round(v, 4) for k, v in timings.items()}


def _score_chunks(
    ctx: Context, todo: Sequence[Clip], active: Sequence[Trigger], models: RunModels, report: TriggerReport,
    timings: dict[str, float], prior: list[float] | None, classes: list[str] | None, pool: Executor,
    *, batch_size: int,
) -> None:  # fmt: skip
    """:func:`_score_all`'s loop over chunks, with ``pool`` for the anomaly autoencoder."""
    for chunk in chunked(_read_clips(ctx, todo, report, timings), frame_bytes):
        read = time.perf_counter()
        promoted, reference = _detect(ctx, chunk, models, active, batch_size=batch_size)
        detected = time.perf_counter()
        anomaly, pending = (
            anomaly_in_background(pool, models.anomaly, chunk) if models.anomaly is not None else (None, None)
        )
        caches = chunk_caches(chunk, active)
        inputs = [
            TriggerInputs(
                clip=frames,
                detections=promoted.get(frames.clip_id),
                reference_detections=reference.get(frames.clip_id),
                model_id=models.model_id,
                reference_model_id=models.reference_model_id,
                score_threshold=ctx.settings.score_threshold,
                candidate_threshold=ctx.settings.trigger_candidate_threshold,
                anomaly=anomaly,
                class_prior=prior,
                class_names=classes,
                cache=cache,
            )
            for frames, cache in zip(chunk, caches, strict=True)
        ]
        scored = score_chunk(inputs, active)
        if pending is not None:
            pending.result()  # done unless the anomaly trigger is off; the next chunk's detector uses torch
        for frames, results in zip(chunk, scored, strict=True):
            if _record_scores(ctx, frames.clip_id, results, active, models):
                report.scored.append(frames.clip_id)
                report.scores[frames.clip_id] = {name: result.score for name, result in results.items()}
        timings["detector"] += detected - read
        timings["triggers"] += time.perf_counter() - detected


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
    whose model is missing are skipped, with the reason in the report. A clip whose frames cannot be read
    is quarantined and the others go on. Every candidate's decision is recorded with its reason.

    Runs take turns (a lock in lineage): a run that starts while another scores or selects waits for
    it, then finds its clips scored and decided. Without the turns, a second run would score a clip
    the first had just selected back to ``scored`` and decide it again against another budget.
    """
    with ctx.db.lock("triggers", wait_seconds=_RUN_WAIT_SECONDS) as held:
        if not held:
            raise RetryableLineageError(
                f"another triggers run has been running for {_RUN_WAIT_SECONDS:.0f} s; "
                "run this one again when it has ended"
            )
        return _run_triggers(
            ctx, budget_fraction=budget_fraction, budget_count=budget_count, clip_ids=clip_ids,
            triggers=triggers, batch_size=batch_size, registry=registry,
        )  # fmt: skip


def _run_triggers(
    ctx: Context,
    *,
    budget_fraction: float | None,
    budget_count: int | None,
    clip_ids: Sequence[str] | None,
    triggers: Sequence[str] | None,
    batch_size: int,
    registry: TriggerRegistry | None,
) -> TriggerReport:
    chosen = (registry or TRIGGERS).select(triggers or ctx.settings.triggers or None)
    if budget_fraction is None and budget_count is None:
        budget_fraction, budget_count = ctx.settings.budget_fraction, ctx.settings.budget_count
    todo = _clips_to_score(ctx, clip_ids)
    models = load_models(ctx, chosen, load=bool(todo))
    for name, why in models.skipped.items():
        logger.warning("trigger %s skipped: %s", name, why)
    active = [t for t in chosen if t.name not in models.skipped]
    report = TriggerReport([], [], [], dict(models.skipped), {}, models.model_id)
    _score_all(ctx, todo, active, models, report, batch_size=batch_size)
    decisions, report.budget = _select(
        ctx,
        report.scores,
        clip_ids=clip_ids,
        fraction=budget_fraction,
        count=budget_count,
        order=[t.name for t in chosen],
    )
    report.selected = [d.clip_id for d in decisions if d.selected]
    report.rejected = [d.clip_id for d in decisions if not d.selected]
    report.reasons = {d.clip_id: _reason(d) for d in decisions}
    logger.info("%s", report.summary())
    return report
