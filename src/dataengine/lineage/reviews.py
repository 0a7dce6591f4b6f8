"""Review tasks: one per (platform, clip, exported annotation version). The caller commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dataengine.lineage.models import ReviewTask, utcnow
from dataengine.lineage.upsert import insert_if_absent


def upsert_review_task(
    session: Session,
    *,
    clip_id: str,
    platform: str,
    exported_version: int,
    external_id: str | None,
) -> tuple[ReviewTask, bool]:
    """The review task of a clip version on a platform; returns ``(task, created)``."""
    created = insert_if_absent(
        session,
        ReviewTask,
        {
            "clip_id": clip_id,
            "platform": platform,
            "exported_version": exported_version,
            "external_id": external_id,
            "status": "exported",
            "exported_at": utcnow(),
        },
    )
    task = find_task(session, platform=platform, clip_id=clip_id, exported_version=exported_version)
    assert task is not None, "inserted or found just now"
    if not created and external_id is not None:
        task.external_id = external_id
        session.flush()
    return task, created


def review_tasks(
    session: Session, *, platform: str | None = None, status: str | None = None
) -> list[ReviewTask]:
    """Review tasks filtered by platform and status, oldest first."""
    query = select(ReviewTask).order_by(ReviewTask.id)
    if platform is not None:
        query = query.where(ReviewTask.platform == platform)
    if status is not None:
        query = query.where(ReviewTask.status == status)
    return list(session.scalars(query))


def finish_review_task(
    session: Session, task: ReviewTask, *, imported_version: int | None, error: str | None = None
) -> None:
    """Mark a task imported (with the version it produced) or failed (with the error)."""
    task.status = "failed" if error else "imported"
    task.imported_version = imported_version
    task.error = error
    task.imported_at = utcnow()
    session.flush()


def find_task(session: Session, *, platform: str, clip_id: str, exported_version: int) -> ReviewTask | None:
    """The review task of a clip version on a platform, in any status."""
    query = select(ReviewTask).where(
        ReviewTask.platform == platform,
        ReviewTask.clip_id == clip_id,
        ReviewTask.exported_version == exported_version,
    )
    return session.scalars(query).one_or_none()
