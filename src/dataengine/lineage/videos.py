"""The videos aggregate: one row per source video, keyed by a deterministic id. The caller commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dataengine.errors import LineageError
from dataengine.lineage.models import Video
from dataengine.lineage.upsert import insert_if_absent


def get_video(session: Session, video_id: str) -> Video | None:
    """The video with ``video_id``, if registered."""
    return session.get(Video, video_id)


def register_video(
    session: Session,
    *,
    video_id: str,
    uri: str,
    sha256: str,
    status: str = "ingesting",
    camera: str | None = None,
    recorded_at: datetime | None = None,
    duration: float | None = None,
    fps: float | None = None,
    width: int | None = None,
    height: int | None = None,
    error: str | None = None,
) -> Video:
    """Insert or update the video row keyed by ``video_id`` (an upsert: two runs may race)."""
    insert_if_absent(session, Video, {"id": video_id, "sha256": sha256, "uri": uri, "status": status})
    video = session.get(Video, video_id, populate_existing=True)
    if video is None:
        raise LineageError(f"video {video_id}: its sha256 {sha256} is registered under another id")
    if video.sha256 != sha256:
        raise LineageError(f"video id {video_id} is registered with another sha256 ({video.sha256})")
    video.uri = uri
    video.status = status
    video.camera = camera
    video.recorded_at = recorded_at
    video.duration = duration
    video.fps = fps
    video.width = width
    video.height = height
    video.error = error
    session.flush()
    return video


def cameras_of(session: Session, video_ids: Iterable[str]) -> dict[str, str | None]:
    """The camera of each of ``video_ids`` that is registered (None when the video names none)."""
    wanted = set(video_ids)
    if not wanted:
        return {}
    rows = session.execute(select(Video.id, Video.camera).where(Video.id.in_(wanted)))
    return {video_id: camera for video_id, camera in rows}


def list_videos(session: Session, *, status: str | None = None) -> list[Video]:
    """Videos, optionally only those with ``status``, ordered by id."""
    query = select(Video).order_by(Video.id)
    if status is not None:
        query = query.where(Video.status == status)
    return list(session.scalars(query))
