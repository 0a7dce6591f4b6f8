"""Pulling finished reviews into new annotation versions: ``dataengine review import``.

A refused review (a malformed file, a box outside its frame, an unknown label) is quarantined under its
URI and its clip stays ``in_review`` with its task open, so a corrected file is imported by a later run.
The refusal is noted on the task together with the payload's sha256: rerunning on the same bad payload
adds no rows, a changed payload is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataengine.context import Context
from dataengine.errors import DataEngineError, FormatError, ObjectExistsError, RetryableLineageError
from dataengine.formats import (
    ClipAnnotations,
    SavedAnnotation,
    load_annotations,
    next_version,
    orphan_version,
    save_annotations,
    sha256_hex,
)
from dataengine.lineage import ReviewTask, Session
from dataengine.lineage.annotations import annotation_versions, record_saved
from dataengine.lineage.clips import get_clip, record_event, set_stage
from dataengine.lineage.quarantine import quarantine
from dataengine.lineage.reviews import find_task, finish_review_task, review_tasks
from dataengine.progress import NO_PROGRESS, Progress
from dataengine.review.base import CompletedReview, OpenTask, ReviewPlatform
from dataengine.review.diff import BoxChanges, box_changes, review_quality
from dataengine.review.empty import EMPTY_VERSION, empty_labels
from dataengine.review.import_report import ImportReport
from dataengine.review.label_files import import_file
from dataengine.review.platforms import get_platform

# How long the import of a review waits for another import of the same clip (seconds: one review).
_IMPORT_WAIT_SECONDS = 300.0


def import_reviews(
    ctx: Context,
    *,
    platform: str | None = None,
    file: str | Path | None = None,
    open_tasks_only: bool = False,
    progress: Progress = NO_PROGRESS,
) -> ImportReport:
    """Import every finished review of an open task as the clip's next annotation version.

    The platform is handed the tasks that lineage holds open and says which of them are finished; on the
    ``simulated`` platform a SIMULATED reviewer (synthetic ground truth, demo and tests only) finishes all.
    ``file`` is a platform's label export (Encord: a JSON list of label rows) to import instead of asking
    the platform. Idempotent: an imported review is never imported again. ``progress`` counts the
    reviews imported (or refused), out of the open tasks when asking the platform.
    """
    reviewer = get_platform(ctx, platform)
    report = ImportReport(
        imported=[], versions={}, boxes_changed=0, changes={}, failed=[], platform=reviewer.name
    )
    tasks = open_tasks(ctx, reviewer.name)

    def one(ctx: Context, reviewer: ReviewPlatform, review: CompletedReview, report: ImportReport) -> None:
        import_one(ctx, reviewer, review, report)
        progress.advance()

    if file is not None:
        progress.start(f"review import of {Path(file).name}", None)
        import_file(ctx, reviewer, file, tasks, report, import_one=one, open_tasks_only=open_tasks_only)
        return report
    progress.start(f"review import from {reviewer.name}", len(tasks))
    for review in reviewer.completed(tasks):
        one(ctx, reviewer, review, report)
    return report


def open_tasks(ctx: Context, platform: str) -> list[OpenTask]:
    """The tasks on ``platform`` that lineage holds as exported and not yet imported, oldest first."""
    with ctx.db.session() as session:
        return [
            OpenTask(task.clip_id, task.exported_version, task.external_id)
            for task in review_tasks(session, platform=platform, status="exported")
        ]


def exported_labels(ctx: Context, clip_id: str, version: int) -> ClipAnnotations:
    """The version that went to review: a stored one, or the empty pre-labels of version 0."""
    if version == EMPTY_VERSION:
        return empty_labels(ctx.store, clip_id, classes=ctx.settings.classes)
    return load_annotations(ctx.store, clip_id, version)


def _refusal_note(sha256: str, message: str) -> str:
    return f"payload sha256 {sha256}: {message}"


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the import of one review needs from lineage."""

    models: list[str]
    registered: set[int]


def import_one(ctx: Context, reviewer: ReviewPlatform, review: CompletedReview, report: ImportReport) -> None:
    """Import one finished review of an open task as the clip's next version (or refuse it).

    Imports of one clip take turns (a lock in lineage): one that waited finds the task imported and
    leaves it. Without the turns, two imports of one review could both miss the other's version file
    and write two versions.
    """
    with ctx.db.lock(f"review-import/{review.clip_id}", wait_seconds=_IMPORT_WAIT_SECONDS) as held:
        if not held:
            raise RetryableLineageError(
                f"another run has been importing a review of clip {review.clip_id} for "
                f"{_IMPORT_WAIT_SECONDS:.0f} s; run this import again when it has ended"
            )
        _import_one(ctx, reviewer, review, report)


def _import_one(
    ctx: Context, reviewer: ReviewPlatform, review: CompletedReview, report: ImportReport
) -> None:
    sha256 = sha256_hex(review.payload)
    pending = _pending(ctx, reviewer.name, review, sha256, report)
    if pending is None:
        return
    try:
        exported = exported_labels(ctx, review.clip_id, review.exported_version)
    except DataEngineError as exc:
        if exc.retryable:
            raise
        report.failed.append((review.clip_id, f"cannot read the exported version: {exc}"))
        return
    try:
        reviewed = reviewer.to_annotations(review, exported=exported)
    except FormatError as exc:
        _refuse(ctx, reviewer.name, review, sha256, exc)
        report.failed.append((review.clip_id, str(exc)))
        return
    producer = _producer(reviewer.name, review, pending.models, sha256)
    saved, changes = _save(ctx, review, exported, reviewed, producer, pending.registered)
    _register(ctx, reviewer.name, review, saved, producer, changes)
    report.imported.append(review.clip_id)
    report.versions[review.clip_id] = saved.version
    report.changes[review.clip_id] = changes.total
    report.boxes_changed += changes.total
    if review.simulated:
        report.simulated = True
        report.simulated_clips.append(review.clip_id)


def _pending(
    ctx: Context, platform: str, review: CompletedReview, sha256: str, report: ImportReport
) -> _Pending | None:
    """The lineage facts for importing ``review``, or ``None`` when it is not to be imported now."""
    with ctx.db.session() as session:
        task = _open_task(session, platform, review)
        if task is None:
            return None
        if task.error and task.error.startswith(_refusal_note(sha256, "")):
            report.still_refused.append(review.clip_id)
            return None
        stage = get_clip(session, review.clip_id).stage
        if stage != "in_review":
            report.failed.append((review.clip_id, f"the clip is in stage {stage}, not in_review"))
            return None
        rows = {row.version: row for row in annotation_versions(session, review.clip_id)}
    parent = rows.get(review.exported_version)
    models = [str(model) for model in parent.producer.get("models", [])] if parent is not None else []
    return _Pending(models=models, registered=set(rows))


def _open_task(session: Session, platform: str, review: CompletedReview) -> ReviewTask | None:
    task = find_task(
        session, platform=platform, clip_id=review.clip_id, exported_version=review.exported_version
    )
    return task if task is not None and task.status == "exported" else None


def _producer(platform: str, review: CompletedReview, models: list[str], sha256: str) -> dict[str, Any]:
    producer: dict[str, Any] = {
        "models": models,
        "platform": platform,
        "reviewers": list(review.reviewers),
        "external_id": review.external_id,
        "payload_sha256": sha256,
    }
    if review.simulated:
        producer["simulated"] = True
    return producer


def _save(
    ctx: Context,
    review: CompletedReview,
    exported: ClipAnnotations,
    reviewed: ClipAnnotations,
    producer: dict[str, Any],
    registered: set[int],
) -> tuple[SavedAnnotation, BoxChanges]:
    """Write the reviewed labels as a new version, or reuse the one an interrupted run already wrote."""
    orphan = orphan_version(
        ctx.store, review.clip_id, registered=registered, source="review", producer=producer
    )
    result = orphan or ClipAnnotations(
        clip_id=review.clip_id,
        version=next_version(ctx.store, review.clip_id),
        parent_version=review.exported_version or None,
        source="review",
        producer=producer,
        classes=list(exported.classes),
        frames=reviewed.frames,
    )
    try:
        return save_annotations(ctx.store, result), box_changes(exported, result)
    except ObjectExistsError:
        # A concurrent import of the same review wrote this version first (its file differs from ours
        # only in the time it was written): use that one, registered or not.
        theirs = orphan_version(ctx.store, review.clip_id, registered=(), source="review", producer=producer)
        if theirs is None:
            raise
        return save_annotations(ctx.store, theirs), box_changes(exported, theirs)


def _register(
    ctx: Context,
    platform: str,
    review: CompletedReview,
    saved: SavedAnnotation,
    producer: dict[str, Any],
    changes: BoxChanges,
) -> None:
    with ctx.db.session() as session:
        record_saved(
            session, saved, source="review", parent_version=review.exported_version or None, producer=producer
        )
        task = _open_task(session, platform, review)
        if task is not None:
            finish_review_task(session, task, imported_version=saved.version)
        details: dict[str, Any] = {
            "platform": platform,
            "external_id": review.external_id,
            "version": saved.version,
            "parent_version": review.exported_version,
            "reviewers": list(review.reviewers),
            "boxes_changed": changes.total,
            "changes": changes.to_dict(),
            "quality": review_quality(changes, models=producer.get("models", []), seconds=review.seconds),
        }
        if review.simulated:
            details["simulated"] = True
        set_stage(session, saved.clip_id, "reviewed", run_id=ctx.run_id, actor=ctx.actor, details=details)


def _refuse(ctx: Context, platform: str, review: CompletedReview, sha256: str, exc: FormatError) -> None:
    """Quarantine a refused review file; its clip stays in review and its task stays open."""
    with ctx.db.session() as session:
        quarantine(
            session,
            kind="annotation",
            input=review.source_name,
            reason=str(exc),
            stage="review",
            clip_id=None,
            run_id=ctx.run_id,
        )
        details: dict[str, Any] = {
            "platform": platform,
            "external_id": review.external_id,
            "input": review.source_name,
            "error": str(exc),
        }
        field_path = getattr(exc, "field", None)
        if field_path is not None:
            details["field"] = field_path
        record_event(
            session,
            review.clip_id,
            "reviewed",
            status="failed",
            run_id=ctx.run_id,
            actor=ctx.actor,
            details=details,
        )
        task = _open_task(session, platform, review)
        if task is not None:
            # The task stays open ("exported"): the note only stops reruns from refusing the same bytes again.
            task.error = _refusal_note(sha256, str(exc))
