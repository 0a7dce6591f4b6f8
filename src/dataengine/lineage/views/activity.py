"""What the loop did in a time window: the review outcomes and a round's counts (``review report``, demo)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.lineage.datasets import dataset_members
from dataengine.lineage.models import AnnotationVersion, Clip, ClipEvent, Model, Video


def review_outcomes(session: Session, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """The details of every successful ``reviewed`` event (since ``since``), oldest first, detached."""
    query = select(ClipEvent).where(ClipEvent.stage == "reviewed", ClipEvent.status == "ok")
    if since is not None:
        query = query.where(ClipEvent.at >= since)
    return [dict(event.details) for event in session.scalars(query.order_by(ClipEvent.at))]


@dataclass(frozen=True, slots=True)
class Activity:
    """The lineage rows written since a moment: what one round of the loop did."""

    videos: int
    clips: int
    selected: int
    autolabelled_boxes: int
    boxes_changed: int
    #: The newest model created in the window, its status, dataset and that dataset's size.
    model_id: str | None = None
    model_status: str | None = None
    dataset_id: str | None = None
    dataset_clips: int = 0


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def activity_since(session: Session, since: datetime) -> Activity:
    """Counts of the videos, clips, selections, autolabelled boxes and review edits since ``since``."""
    changed = sum(int(d.get("boxes_changed", 0)) for d in review_outcomes(session, since=since))
    model = session.scalars(
        select(Model).where(Model.created_at >= since).order_by(Model.created_at.desc()).limit(1)
    ).first()
    dataset_id = model.dataset_id if model is not None else None
    return Activity(
        videos=_count(session, select(func.count()).select_from(Video).where(Video.created_at >= since)),
        clips=_count(session, select(func.count()).select_from(Clip).where(Clip.created_at >= since)),
        selected=_count(
            session,
            select(func.count())
            .select_from(ClipEvent)
            .where(ClipEvent.stage == "selected", ClipEvent.at >= since),
        ),
        autolabelled_boxes=_count(
            session,
            select(func.sum(AnnotationVersion.n_boxes)).where(
                AnnotationVersion.source == "autolabel", AnnotationVersion.created_at >= since
            ),
        ),
        boxes_changed=changed,
        model_id=model.id if model is not None else None,
        model_status=model.status if model is not None else None,
        dataset_id=dataset_id,
        dataset_clips=len(dataset_members(session, dataset_id)) if dataset_id else 0,
    )
