"""Importing a platform's label export file, row by row: ``dataengine review import --file EXPORT.json``.

Every row ends in exactly one outcome, and the report names each one:

- a row of a clip with an open review task on the platform is imported as that task's review;
- a row of a clip known to lineage but without an open task (labelled before the team adopted the engine,
  or on another round) becomes a new annotation version with ``source: import``, recorded in lineage as
  imported from that file; ``open_tasks_only`` skips these instead;
- a row that cannot be read, or whose labels do not fit the clip, is refused (and quarantined);
- a row naming no known clip is skipped, with the reason; so is a row imported before (same bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dataengine.errors import FormatError, ReviewError
from dataengine.formats import (
    ClipAnnotations,
    SavedAnnotation,
    next_version,
    orphan_version,
    save_annotations,
    sha256_hex,
)
from dataengine.lineage.annotations import annotation_versions, record_annotation
from dataengine.lineage.clips import list_clips, set_stage
from dataengine.lineage.quarantine import quarantine
from dataengine.review.base import CompletedReview, ExportRow, OpenTask, ReviewPlatform
from dataengine.review.empty import EMPTY_VERSION, empty_labels
from dataengine.review.import_report import ImportReport

if TYPE_CHECKING:
    from dataengine.context import Context

#: Imports one review of an open task into the report (``importing.import_one``).
ImportOne = Callable[["Context", ReviewPlatform, CompletedReview, ImportReport], None]

#: Stages whose clips cannot take imported labels (their frames are unreadable).
_NO_IMPORT_STAGES = ("quarantined",)


class ExportReader(Protocol):
    """A platform that reads its own label export files."""

    name: str

    def read_export(self, path: str | Path) -> list[ExportRow]:
        """Every row of the file, each naming its clip or what is wrong with it."""
        ...


@dataclass(frozen=True, slots=True)
class _Known:
    """What lineage says of the clips the file names."""

    stages: dict[str, str]
    open_tasks: dict[str, OpenTask]


def reader_of(reviewer: ReviewPlatform, path: str | Path) -> ExportReader:
    """``reviewer`` as an export reader, or a :class:`ReviewError` saying which platforms read files."""
    if not callable(getattr(reviewer, "read_export", None)):
        raise ReviewError(
            f"cannot import the label export {path}: the {reviewer.name} platform reads no export files "
            "(use --platform encord for an Encord export, --platform labelstudio for a Label Studio one)"
        )
    return reviewer  # type: ignore[return-value]


def import_file(
    ctx: Context,
    reviewer: ReviewPlatform,
    path: str | Path,
    open_tasks: list[OpenTask],
    report: ImportReport,
    *,
    import_one: ImportOne,
    open_tasks_only: bool = False,
) -> None:
    """Import every row of ``path`` as :mod:`this module <dataengine.review.label_files>` describes."""
    rows = reader_of(reviewer, path).read_export(path)
    report.file, report.n_rows = str(path), len(rows)
    known = _known(ctx, rows, open_tasks)
    for row in rows:
        if row.problem is not None or row.clip_id is None:
            _refuse_row(ctx, row, row.problem or "it names no clip", report)
        elif row.clip_id not in known.stages:
            report.skipped.append((row.name, f"no clip {row.clip_id} in the lineage database"))
        elif (task := known.open_tasks.get(row.clip_id)) is not None:
            import_one(ctx, reviewer, _task_review(row, task), report)
        elif open_tasks_only:
            report.skipped.append((row.name, f"no open {reviewer.name} review task (--open-tasks-only)"))
        elif known.stages[row.clip_id] in _NO_IMPORT_STAGES:
            report.skipped.append((row.name, f"clip {row.clip_id} is {known.stages[row.clip_id]}"))
        else:
            _import_labels(ctx, reviewer, row, str(path), report)


def _known(ctx: Context, rows: list[ExportRow], open_tasks: list[OpenTask]) -> _Known:
    named = sorted({row.clip_id for row in rows if row.clip_id is not None})
    with ctx.db.session() as session:
        stages = {clip.id: clip.stage for clip in list_clips(session, clip_ids=named)} if named else {}
    return _Known(stages, {task.clip_id: task for task in open_tasks})


def _task_review(row: ExportRow, task: OpenTask) -> CompletedReview:
    return CompletedReview(
        clip_id=task.clip_id,
        external_id=task.external_id or row.external_id,
        exported_version=task.exported_version,
        payload=row.payload,
        source_name=row.name,
        reviewers=list(row.reviewers),
    )


def _refuse_row(ctx: Context, row: ExportRow, problem: str, report: ImportReport) -> None:
    with ctx.db.session() as session:
        quarantine(
            session, kind="label_export", input=row.name, reason=problem, stage="review",
            clip_id=None, run_id=ctx.run_id,  # the row is refused, not the clip
        )  # fmt: skip
    report.failed.append((row.name, problem))


def _import_labels(
    ctx: Context, reviewer: ReviewPlatform, row: ExportRow, path: str, report: ImportReport
) -> None:
    """A row of a clip without an open task: a new version with ``source: import``."""
    assert row.clip_id is not None
    clip_id, sha256 = row.clip_id, sha256_hex(row.payload)
    with ctx.db.session() as session:
        registered = {v.version: (v.source, dict(v.producer)) for v in annotation_versions(session, clip_id)}
    done = [v for v, (source, producer) in registered.items() if _same_import(source, producer, sha256)]
    if done:
        report.already.append((row.name, f"imported before as v{done[0]}"))
        return
    try:
        skeleton = empty_labels(ctx.store, clip_id, classes=ctx.settings.classes)
        review = CompletedReview(
            clip_id, row.external_id, EMPTY_VERSION, row.payload, row.name, row.reviewers
        )
        labels = reviewer.to_annotations(review, exported=skeleton)
    except FormatError as exc:
        _refuse_row(ctx, row, str(exc), report)
        return
    producer = {
        "models": [], "platform": reviewer.name, "file": path, "row": row.index,
        "reviewers": list(row.reviewers), "external_id": row.external_id, "payload_sha256": sha256,
    }  # fmt: skip
    parent = max(registered) if registered else None
    saved = _save(ctx, clip_id, labels, producer, parent, set(registered))
    _register(ctx, saved, producer, parent)
    report.imported.append(clip_id)
    report.versions[clip_id] = saved.version
    report.from_file.append(clip_id)


def _same_import(source: str, producer: dict[str, Any], sha256: str) -> bool:
    """Whether a version came from these very bytes (as a review of a task, or as imported labels)."""
    return source in ("import", "review") and producer.get("payload_sha256") == sha256


def _save(
    ctx: Context,
    clip_id: str,
    labels: ClipAnnotations,
    producer: dict[str, Any],
    parent: int | None,
    registered: set[int],
) -> SavedAnnotation:
    """Write the labels as the next version, or adopt the file an interrupted run wrote for this row."""
    orphan = orphan_version(ctx.store, clip_id, registered=registered, source="import", producer=producer)
    if orphan is not None:
        return save_annotations(ctx.store, orphan)  # same bytes: a no-op that gives its sha256
    annotations = ClipAnnotations(
        clip_id=clip_id, version=next_version(ctx.store, clip_id), parent_version=parent, source="import",
        producer=producer, classes=list(labels.classes), frames=labels.frames,
    )  # fmt: skip
    return save_annotations(ctx.store, annotations)


def _register(ctx: Context, saved: SavedAnnotation, producer: dict[str, Any], parent: int | None) -> None:
    details = {
        "imported_from": producer["file"], "row": producer["row"], "platform": producer["platform"],
        "version": saved.version, "n_boxes": saved.n_boxes, "payload_sha256": producer["payload_sha256"],
    }  # fmt: skip
    with ctx.db.session() as session:
        record_annotation(
            session, clip_id=saved.clip_id, version=saved.version, uri=saved.uri, sha256=saved.sha256,
            source="import", parent_version=parent, producer=producer, n_frames=saved.n_frames,
            n_boxes=saved.n_boxes,
        )  # fmt: skip
        set_stage(session, saved.clip_id, "reviewed", run_id=ctx.run_id, actor=ctx.actor, details=details)
