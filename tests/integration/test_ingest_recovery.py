"""Ingest after a real kill, over duplicates and renames, with the hash cache, from S3 landing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dataengine.clips import read_meta, video_id_for
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import discover, discovery, ingest, landing_videos, pipeline
from dataengine.ingest.sources import VideoSource, source_sha256
from dataengine.lineage.clips import list_clips
from dataengine.lineage.db import Database
from dataengine.lineage.models import Clip, ClipEvent
from dataengine.lineage.videos import get_video
from dataengine.storage import ObjectStore
from dataengine.synthetic import SyntheticScene, render_video, write_landing

_CHILD = """
import sys
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import ingest
ctx = Context.create(Settings(database_url=sys.argv[1], storage_url=sys.argv[2]), run_id="test/killed")
ingest(ctx, [sys.argv[3]], clip_seconds=1.0, sample_fps=0.0)
"""


def _clip_rows(ctx: Context) -> tuple[int, int]:
    with ctx.db.session() as session:
        clips = session.scalar(select(func.count()).select_from(Clip)) or 0
        events = session.scalar(select(func.count()).select_from(ClipEvent)) or 0
    return clips, events


def _outputs(store: ObjectStore) -> dict[str, bytes]:
    return {key: store.read_bytes(key) for key in store.list("clips")}


@pytest.mark.slow
def test_kill_mid_video_then_rerun_leaves_no_partial_clip_and_no_duplicate(
    settings: Settings, tmp_path: Path
) -> None:
    video = tmp_path / "long.mp4"
    render_video(video, scene=SyntheticScene(seed=21, n_frames=300, fps=10.0))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, settings.database_url, settings.storage_url, str(video)], env=env
    )
    ctx = Context.create(settings, run_id="test/rerun")
    try:
        deadline = time.monotonic() + 120
        while len(ctx.store.list("clips", suffix="meta.json")) < 3 and child.poll() is None:
            assert time.monotonic() < deadline, "the child never wrote three clips"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        written = {key.split("/")[1] for key in ctx.store.list("clips", suffix="meta.json")}
        folders = {key.split("/")[1] for key in ctx.store.list("clips")}
        assert 3 <= len(written) < 29, "killed too late: the video was finished"
        with ctx.db.session() as session:
            registered = {clip.id for clip in list_clips(session)}
        # A clip without meta.json (partial) is never registered: later stages cannot see it.
        assert registered <= written
        assert folders - written or len(registered) < 29

        report = ingest(ctx, [str(video)], clip_seconds=1.0, sample_fps=0.0)
        video_id = video_id_for(hashlib.sha256(video.read_bytes()).hexdigest())
        all_clips = sorted(report.clips + report.existing_clips)
        assert sorted(report.existing_clips) == sorted(registered)
        # 30 clips of 1 s, except that the boundary at 240 moved to x264's keyframe at 250.
        assert len(all_clips) == 29
        assert f"{video_id}-0000250" in all_clips
        assert _clip_rows(ctx) == (29, 29)
        assert ingest(ctx, [str(video)], clip_seconds=1.0, sample_fps=0.0).skipped_videos == [video_id]
        assert _clip_rows(ctx) == (29, 29)
    finally:
        if child.poll() is None:
            child.kill()
        ctx.close()
    # The same objects as one uninterrupted run.
    clean = Context.create(
        settings.model_copy(
            update={
                "database_url": f"sqlite:///{tmp_path / 'clean.db'}",
                "storage_url": f"file://{tmp_path / 'clean'}",
            }
        )
    )
    assert sorted(ingest(clean, [str(video)], clip_seconds=1.0, sample_fps=0.0).clips) == all_clips
    killed_store = ObjectStore(settings.storage_url)
    assert sorted(_outputs(killed_store)) == sorted(_outputs(clean.store))
    for clip_id in all_clips:
        assert read_meta(killed_store, clip_id) == read_meta(clean.store, clip_id)
    clean.close()


def test_renamed_and_double_dropped_copies_are_one_video(ctx: Context) -> None:
    [key] = write_landing(ctx.store, n_videos=1, seed=31, seconds=2.0, with_events=False)
    data = ctx.store.read_bytes(key)
    ctx.store.write_bytes("landing/cam01/2026-11-22/renamed.mp4", data)
    ctx.store.write_bytes("landing/other/copy.mp4", data)
    assert len(landing_videos(ctx)) == 3
    assert discover(ctx) == [key]  # one key per sha256: the first in sorted order
    report = ingest(ctx, clip_seconds=1.0)
    assert len(report.videos) == 1
    assert len(report.clips) == 2
    assert discover(ctx) == []
    named = ingest(ctx, ["landing/other/copy.mp4"], clip_seconds=1.0)
    assert named.skipped_videos == report.videos
    assert _clip_rows(ctx) == (2, 2)


def test_hash_cache_reads_each_file_once(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = write_landing(ctx.store, n_videos=2, seed=32, seconds=1.0, with_events=False)
    hashed: list[str] = []
    real = source_sha256

    def counting(store: ObjectStore, source: VideoSource) -> str:
        hashed.append(source.uri)
        return real(store, source)

    monkeypatch.setattr(discovery, "source_sha256", counting)
    monkeypatch.setattr(pipeline, "source_sha256", counting)
    assert discover(ctx) == sorted(keys)
    assert len(hashed) == 2
    ingest(ctx, clip_seconds=1.0)  # discovery again, then the ingest of each named key
    assert len(hashed) == 2
    assert discover(ctx) == []
    assert len(hashed) == 2
    # A file replaced in place (new size and time) is hashed again.
    ctx.store.write_bytes(keys[0], ctx.store.read_bytes(keys[0]) + b"\0")
    assert discover(ctx) == [keys[0]]
    assert len(hashed) == 3


def test_path_pattern_and_container_tags(settings: Settings, tmp_path: Path) -> None:
    custom = settings.model_copy(update={"ingest_path_pattern": "site-{any}/{camera}_{datetime}.mp4"})
    ctx = Context.create(custom, run_id="test/pattern")
    try:
        render_video(tmp_path / "v.mp4", scene=SyntheticScene(seed=33, n_frames=10))
        ctx.store.put_file(tmp_path / "v.mp4", "landing/site-north/gate2_20261122T081500.mp4")
        tagged = tmp_path / "tagged.mp4"
        _tagged_video(tagged)
        report = ingest(ctx, ["landing/site-north/gate2_20261122T081500.mp4", str(tagged)], clip_seconds=1.0)
        first, second = (read_meta(ctx.store, clip_id) for clip_id in report.clips)
        assert (first.camera, first.recorded_at) == ("gate2", "2026-11-22T08:15:00Z")
        # No match in the path: the container's camera and creation_time tags.
        assert (second.camera, second.recorded_at) == ("lobby-cam", "2026-03-04T05:06:07Z")
        with ctx.db.session() as session:
            video = get_video(session, second.video_id)
            assert video is not None
            assert video.recorded_at == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    finally:
        ctx.close()


def _tagged_video(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "use_metadata_tags"}) as container:
        container.metadata["creation_time"] = "2026-03-04T05:06:07.000000Z"
        container.metadata["camera"] = "lobby-cam"
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.s3
def test_s3_landing_with_duplicates_and_cache(
    settings: Settings, s3_store: ObjectStore, sqlite_db: Database
) -> None:
    ctx = Context(settings=settings, store=s3_store, db=sqlite_db, run_id="test/s3")
    keys = write_landing(s3_store, n_videos=2, seed=34, seconds=2.0, with_events=False)
    s3_store.write_bytes("landing/cam09/2026-11-23/dup.mp4", s3_store.read_bytes(keys[0]))
    assert discover(ctx) == sorted(keys)
    assert s3_store.list("ingest/source-hashes")  # the ETags and hashes are remembered
    report = ingest(ctx, clip_seconds=1.0)
    assert len(report.videos) == 2
    assert len(report.clips) == 4
    meta = read_meta(s3_store, report.clips[0])
    assert meta.source_uri.startswith("s3://")
    assert meta.encoding == "reencode"
    assert s3_store.exists(f"clips/{report.clips[0]}/clip.mp4")
    assert discover(ctx) == []
    assert ingest(ctx, clip_seconds=1.0).clips == []
