"""Finding the landing videos that are not ingested (or quarantined) yet."""

from __future__ import annotations

from dataengine.clips import VIDEO_EXTENSIONS, video_id_for
from dataengine.context import Context
from dataengine.ingest.sources import VideoSource, source_sha256
from dataengine.lineage import repository

#: Video statuses that mean "done with this file": ingest does not pick them up again on its own.
FINAL_STATUSES = ("ingested", "quarantined")


def landing_videos(ctx: Context) -> list[str]:
    """Keys of every video file (by extension) under the landing prefix, sorted."""
    prefix = ctx.settings.landing_prefix.strip("/")
    return [key for key in ctx.store.list(prefix) if key.lower().endswith(VIDEO_EXTENSIONS)]


def discover_with_hashes(ctx: Context) -> list[tuple[str, str]]:
    """``(key, sha256)`` of each landing video whose id is not registered as ingested or quarantined."""
    hashed = [
        (key, source_sha256(ctx.store, VideoSource(uri=ctx.store.uri(key), key=key)))
        for key in landing_videos(ctx)
    ]
    new = []
    with ctx.db.session() as session:
        for key, sha256 in hashed:
            video = repository.get_video(session, video_id_for(sha256))
            if video is None or video.status not in FINAL_STATUSES:
                new.append((key, sha256))
    return new


def discover(ctx: Context) -> list[str]:
    """Keys of the landing videos still to ingest (their sha256-derived id is not ingested or quarantined)."""
    return [key for key, _ in discover_with_hashes(ctx)]
