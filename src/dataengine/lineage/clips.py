"""The clips aggregate: clips and their append-only ``clip_events``. The caller commits.

Every stage change of a clip writes its event row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage.models import CLIP_STAGES, Clip, ClipEvent, utcnow
from dataengine.lineage.upsert import insert_if_absent


def get_clip(session: Session, clip_id: str) -> Clip:
    """The clip with ``clip_id``; raises :class:`NotFoundError` when unknown."""
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFoundError(f"no clip {clip_id!r} in the lineage database; see `dataengine clips list`")
    return clip


def register_clip(
    session: Session,
    *,
    clip_id: str,
    video_id: str,
    start_frame: int,
    end_frame: int,
    start_time: float,
    n_frames: int,
    uri: str,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[Clip, bool]:
    """Register a newly ingested clip; returns ``(clip, created)``. An existing clip is left as it is,
    also one that another run registers at the same moment: only the run that inserted the row writes
    its ``ingested`` event."""
    created = insert_if_absent(
        session,
        Clip,
        {
            "id": clip_id,
            "video_id": video_id,
            "start_frame": start_frame,
            "end_frame": end_frame,
            "start_time": start_time,
            "n_frames": n_frames,
            "uri": uri,
            "stage": "ingested",
        },
    )
    if created:
        _add_event(session, clip_id, "ingested", "ok", run_id, actor, details)
    return get_clip(session, clip_id), created


def _add_event(
    session: Session,
    clip_id: str,
    stage: str,
    status: str,
    run_id: str | None,
    actor: str | None,
    details: dict[str, Any] | None,
) -> ClipEvent:
    event = ClipEvent(
        clip_id=clip_id,
        stage=stage,
        status=status,
        run_id=run_id,
        actor=actor,
        details=details or {},
        at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def set_stage(
    session: Session,
    clip_id: str,
    stage: str,
    *,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ClipEvent:
    """Move a clip to ``stage`` and append the event that says so."""
    if stage not in CLIP_STAGES:
        raise LineageError(f"unknown clip stage {stage!r}; stages are {', '.join(CLIP_STAGES)}")
    clip = get_clip(session, clip_id)
    clip.stage = stage
    clip.updated_at = utcnow()
    return _add_event(session, clip_id, stage, "ok", run_id, actor, details)


def record_event(
    session: Session,
    clip_id: str,
    stage: str,
    *,
    status: str,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ClipEvent:
    """Append an event without changing the clip's stage (a failure, a skip, a training run)."""
    get_clip(session, clip_id)
    return _add_event(session, clip_id, stage, status, run_id, actor, details)


def list_clips(
    session: Session,
    *,
    stage: str | Sequence[str] | None = None,
    video_id: str | None = None,
    clip_ids: Iterable[str] | None = None,
) -> list[Clip]:
    """Clips filtered by stage(s), video or ids, ordered by id."""
    query = select(Clip).order_by(Clip.id)
    if isinstance(stage, str):
        query = query.where(Clip.stage == stage)
    elif stage is not None:
        query = query.where(Clip.stage.in_(list(stage)))
    if video_id is not None:
        query = query.where(Clip.video_id == video_id)
    if clip_ids is not None:
        query = query.where(Clip.id.in_(list(clip_ids)))
    return list(session.scalars(query))


def clip_events(session: Session, clip_id: str) -> list[ClipEvent]:
    """A clip's events, oldest first."""
    query = select(ClipEvent).where(ClipEvent.clip_id == clip_id).order_by(ClipEvent.id)
    return list(session.scalars(query))


def clips_ever_in_stage(session: Session, clip_ids: Iterable[str], stage: str) -> set[str]:
    """Which of ``clip_ids`` have an event of ``stage`` (whatever their stage is now)."""
    ids = list(clip_ids)
    found: set[str] = set()
    # In chunks: a dataset build asks about every clip, and SQLite caps the parameters of one statement.
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        query = select(ClipEvent.clip_id).where(ClipEvent.clip_id.in_(chunk), ClipEvent.stage == stage)
        found.update(session.scalars(query))
    return found


_IN_CHUNK = 5000


def recently_ingested(session: Session, limit: int) -> list[str]:
    """Up to ``limit`` clip ids, most recently ingested first, that are not quarantined."""
    ingested_at = func.max(ClipEvent.at).label("at")
    query = (
        select(ClipEvent.clip_id, ingested_at)
        .join(Clip, Clip.id == ClipEvent.clip_id)
        .where(ClipEvent.stage == "ingested", Clip.stage != "quarantined")
        .group_by(ClipEvent.clip_id)
        .order_by(ingested_at.desc(), ClipEvent.clip_id)
        .limit(limit)
    )
    return [row.clip_id for row in session.execute(query)]
