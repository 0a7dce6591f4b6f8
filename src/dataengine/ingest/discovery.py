"""Finding the landing videos that are not ingested (or quarantined) yet, by content hash.

The same bytes under two names, or dropped twice, are one video: discovery keeps the first key (in
sorted order) of each new sha256. Hashes of files seen before come from the hash cache.
"""

from __future__ import annotations

from dataengine.clips import VIDEO_EXTENSIONS, video_id_for
from dataengine.context import Context
from dataengine.errors import InputRejectedError
from dataengine.ingest.hashcache import HashCache, listing
from dataengine.ingest.sources import VideoSource, source_sha256
from dataengine.lineage.videos import get_video

#: Video statuses that mean "done with this file": ingest does not pick them up again on its own.
FINAL_STATUSES = ("ingested", "quarantined")


def landing_videos(ctx: Context) -> list[str]:
    """Keys of every video file (by extension) under the landing prefix, sorted."""
    return sorted(_landing(ctx))


def _landing(ctx: Context) -> dict[str, str | None]:
    found = listing(ctx.store, ctx.settings.landing_prefix)
    return {key: version for key, version in found.items() if key.lower().endswith(VIDEO_EXTENSIONS)}


def landing_hashes(ctx: Context) -> list[tuple[str, str | None]]:
    """``(key, sha256)`` of every landing video, hashing only files the cache does not know.

    A file that cannot be read (no permission, gone since the listing) has no hash: ``None``.
    """
    cache = HashCache(ctx.store)
    hashed: list[tuple[str, str | None]] = []
    for key, version in sorted(_landing(ctx).items()):
        sha256 = cache.get(key, version)
        if sha256 is None:
            try:
                sha256 = source_sha256(ctx.store, VideoSource(uri=ctx.store.uri(key), key=key))
            except InputRejectedError:
                hashed.append((key, None))  # Ingest tries again, and quarantines it with the reason.
                continue
            cache.put(key, version, sha256)
        hashed.append((key, sha256))
    cache.save()
    return hashed


def discover_with_hashes(ctx: Context) -> list[tuple[str, str | None]]:
    """``(key, sha256)`` of each new landing video: not ingested or quarantined, one key per sha256.

    Unreadable files come with ``None``: ingest records why they were refused.
    """
    new: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    with ctx.db.session() as session:
        for key, sha256 in landing_hashes(ctx):
            if sha256 is None:
                new.append((key, None))
                continue
            if sha256 in seen:
                continue  # The same bytes under another name: one video.
            seen.add(sha256)
            video = get_video(session, video_id_for(sha256))
            if video is None or video.status not in FINAL_STATUSES:
                new.append((key, sha256))
    return new


def discover(ctx: Context) -> list[str]:
    """Keys of the landing videos still to ingest (their sha256-derived id is not ingested or quarantined)."""
    return [key for key, _ in discover_with_hashes(ctx)]
