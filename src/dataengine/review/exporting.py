"""Sending autolabelled clips to a review platform: ``dataengine review export``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dataengine.clips import frame_key
from dataengine.config import PROMOTED_ALIAS
from dataengine.context import Context
from dataengine.errors import DataEngineError, ReviewError
from dataengine.formats import ClipAnnotations, load_annotations
from dataengine.lineage import Session
from dataengine.lineage.annotations import latest_annotation
from dataengine.lineage.clips import get_clip, list_clips, record_event, set_stage
from dataengine.lineage.model_registry import promoted_model
from dataengine.lineage.reviews import find_task, upsert_review_task
from dataengine.progress import NO_PROGRESS, Progress
from dataengine.review.base import ExportItem, ReviewPlatform
from dataengine.review.empty import EMPTY_VERSION, empty_labels
from dataengine.review.platforms import get_platform

#: Stages a clip may be exported from: pre-labels, or (when named explicitly) a reviewed version for a
#: second round of review.
EXPORTABLE_STAGES = ("autolabelled", "reviewed")
#: Stages a clip may be exported from without pre-labels (label from scratch).
EMPTY_EXPORTABLE_STAGES = ("selected", "autolabelled", "reviewed", "in_dataset")


@dataclass
class ExportReport:
    """What :func:`export_for_review` did; ``tasks`` maps exported clips to the platform's task ids."""

    exported: list[str]
    skipped: list[str]
    platform: str
    tasks: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Exported clips that went without pre-labels (version 0, ``source: none``): label from scratch.
    empty: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form."""
        return {
            "platform": self.platform,
            "exported": list(self.exported),
            "skipped": list(self.skipped),
            "tasks": dict(self.tasks),
            "reasons": dict(self.reasons),
            "failed": [{"clip_id": clip_id, "error": error} for clip_id, error in self.failed],
            "without_prelabels": list(self.empty),
        }

    def summary(self) -> str:
        """One short human line, plus one line per failure."""
        lines = [
            f"exported {len(self.exported)} clip(s) for review to {self.platform}; "
            f"skipped {len(self.skipped)}, failed {len(self.failed)}"
        ]
        if self.empty:
            lines.append(
                f"  {len(self.empty)} without pre-labels (label from scratch): {', '.join(self.empty)}"
            )
        lines += [f"  failed {clip_id}: {error}" for clip_id, error in self.failed]
        return "\n".join(lines)


#: Clips per platform call: Encord saves a batch's pre-labels in one bundle.
EXPORT_BATCH = 20


def export_for_review(
    ctx: Context,
    *,
    platform: str | None = None,
    clip_ids: Sequence[str] | None = None,
    prelabels: bool = True,
    progress: Progress = NO_PROGRESS,
) -> ExportReport:
    """Export the latest labels of every ``autolabelled`` clip (or of ``clip_ids``) for review.

    Label from scratch: while there is no model to autolabel with, the ``selected`` clips go too, with
    empty pre-labels (version 0, ``source: none``); ``prelabels=False`` sends every candidate that way,
    e.g. for a new class no model knows yet. Each exported clip gets a review task on the platform, a
    ``review_tasks`` row and stage ``in_review``. Idempotent: a clip version that has a task on the
    platform already is skipped. ``progress`` counts the candidate clips, skipped or exported.
    """
    reviewer = get_platform(ctx, platform)
    report = ExportReport(exported=[], skipped=[], platform=reviewer.name)
    empty = not prelabels or not model_available(ctx)
    with ctx.db.session() as session:
        if clip_ids is None:
            stages = ("autolabelled", "selected") if empty else ("autolabelled",)
            candidates = [clip.id for stage in stages for clip in list_clips(session, stage=stage)]
        else:
            known = {clip.id for clip in list_clips(session, clip_ids=clip_ids)}
            for clip_id in dict.fromkeys(clip_ids):
                if clip_id not in known:
                    _skip(report, clip_id, "no such clip in the lineage database")
            candidates = [clip_id for clip_id in dict.fromkeys(clip_ids) if clip_id in known]
    progress.start(f"review export to {reviewer.name}", len(candidates))
    items = []
    for clip_id in candidates:
        item = _item(ctx, reviewer, clip_id, report, empty=not prelabels)
        if item is None:
            progress.advance()
        else:
            items.append(item)
    for start in range(0, len(items), EXPORT_BATCH):
        batch = items[start : start + EXPORT_BATCH]
        _export_batch(ctx, reviewer, batch, report)
        progress.advance(len(batch))
    return report


def _skip(report: ExportReport, clip_id: str, reason: str) -> None:
    report.skipped.append(clip_id)
    report.reasons[clip_id] = reason


def model_available(ctx: Context) -> bool:
    """Whether autolabel has a model: one is promoted, or ``autolabel_models`` names one by id."""
    if any(name != PROMOTED_ALIAS for name in ctx.settings.autolabel_models):
        return True
    with ctx.db.session() as session:
        return promoted_model(session) is not None


def _item(
    ctx: Context, reviewer: ReviewPlatform, clip_id: str, report: ExportReport, *, empty: bool
) -> ExportItem | None:
    """What to export of ``clip_id``, or ``None`` when it is skipped or cannot be read."""
    with ctx.db.session() as session:
        version, reason = _exportable_version(session, reviewer.name, clip_id, empty=empty)
    if version is None:
        _skip(report, clip_id, reason)
        return None
    try:
        if version == EMPTY_VERSION:
            annotations = empty_labels(ctx.store, clip_id, classes=ctx.settings.classes)
        else:
            annotations = load_annotations(ctx.store, clip_id, version)
    except DataEngineError as exc:
        if exc.retryable:
            raise
        _record_failure(ctx, clip_id, reviewer.name, version, exc)
        report.failed.append((clip_id, str(exc)))
        return None
    frame_uris = {frame.index: ctx.store.uri(frame_key(clip_id, frame.index)) for frame in annotations.frames}
    return ExportItem(clip_id=clip_id, annotations=annotations, frame_uris=frame_uris)


def _export_batch(
    ctx: Context, reviewer: ReviewPlatform, items: Sequence[ExportItem], report: ExportReport
) -> None:
    # The platform call happens outside any transaction: it may be slow, and it is idempotent.
    outcomes = reviewer.export_tasks(items)
    for item in items:
        outcome = outcomes.get(item.clip_id)
        if outcome is None:
            outcome = ReviewError(
                f"clip {item.clip_id}: the {reviewer.name} platform returned no task for it"
            )
        if isinstance(outcome, DataEngineError):
            _record_failure(ctx, item.clip_id, reviewer.name, item.annotations.version, outcome)
            report.failed.append((item.clip_id, str(outcome)))
            continue
        _register(ctx, reviewer.name, item.annotations, outcome)
        report.exported.append(item.clip_id)
        report.tasks[item.clip_id] = outcome
        if item.annotations.version == EMPTY_VERSION:
            report.empty.append(item.clip_id)


def _exportable_version(
    session: Session, platform: str, clip_id: str, *, empty: bool
) -> tuple[int | None, str]:
    """The annotation version to export (0: empty pre-labels), or ``None`` and why not."""
    clip = get_clip(session, clip_id)
    latest = latest_annotation(session, clip_id)
    stages: tuple[str, ...]
    if empty or (clip.stage == "selected" and latest is None):
        version, stages = EMPTY_VERSION, EMPTY_EXPORTABLE_STAGES
    elif latest is None:
        return None, "the clip has no annotation version"
    else:
        version, stages = latest.version, EXPORTABLE_STAGES
    if clip.stage not in stages:
        return None, f"stage {clip.stage} is not one of {', '.join(stages)}"
    if find_task(session, platform=platform, clip_id=clip_id, exported_version=version) is not None:
        what = "its empty pre-labels are" if version == EMPTY_VERSION else f"version {version} is"
        return None, f"{what} already exported to {platform}"
    return version, ""


def _register(ctx: Context, platform: str, annotations: ClipAnnotations, external_id: str) -> None:
    with ctx.db.session() as session:
        upsert_review_task(
            session,
            clip_id=annotations.clip_id,
            platform=platform,
            exported_version=annotations.version,
            external_id=external_id,
        )
        set_stage(
            session,
            annotations.clip_id,
            "in_review",
            run_id=ctx.run_id,
            actor=ctx.actor,
            details={
                "platform": platform,
                "external_id": external_id,
                "exported_version": annotations.version,
            },
        )


def _record_failure(ctx: Context, clip_id: str, platform: str, version: int, exc: DataEngineError) -> None:
    with ctx.db.session() as session:
        record_event(
            session,
            clip_id,
            "in_review",
            status="failed",
            run_id=ctx.run_id,
            actor=ctx.actor,
            details={"platform": platform, "exported_version": version, "error": str(exc)},
        )
