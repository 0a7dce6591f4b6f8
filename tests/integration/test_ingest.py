"""Ingest on real synthetic H.264 video: clips, frames, meta.json, lineage, idempotence, quarantine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from sqlalchemy import func, select

from dataengine.clips import meta_key, read_frame, read_meta, video_id_for
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import ConfigError
from dataengine.ingest import discover, ingest, quarantine_key
from dataengine.ingest.clipper import ClipWriter
from dataengine.lineage.clips import clip_events, list_clips
from dataengine.lineage.db import Database
from dataengine.lineage.models import Clip, ClipEvent, QuarantineItem, Video
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.videos import get_video
from dataengine.storage import ObjectStore
from dataengine.synthetic import SyntheticScene, render_video, write_landing
from dataengine.synthetic.variants import corrupt_frames, render_variant, unknown_codec
from progress_log import ProgressLog


def _video_id(store: ObjectStore, key: str) -> str:
    return video_id_for(hashlib.sha256(store.read_bytes(key)).hexdigest())


def _counts(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Video, Clip, ClipEvent, QuarantineItem)
        }


def _recorded_at(key: str) -> datetime:
    """The recording time a landing key says: ``landing/{camera}/{YYYY-MM-DD}/{HHMMSS}.mp4``."""
    return datetime.strptime(key.split("/", 2)[2], "%Y-%m-%d/%H%M%S.mp4").replace(tzinfo=UTC)


def _snapshot(store: ObjectStore) -> dict[str, bytes]:
    return {key: store.read_bytes(key) for key in store.list()}


def _decoded_frames(path: Path) -> list[np.ndarray[Any, Any]]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture
def landing(ctx: Context) -> list[str]:
    """Two 3-second synthetic videos at 10 fps in the landing area."""
    return write_landing(ctx.store, n_videos=2, seed=5, seconds=3.0, fps=10.0, with_events=False)


@pytest.fixture
def small_ctx(settings: Settings) -> Iterator[Context]:
    """A Context whose max_resolution (400 px) refuses a 640x480 video."""
    context = Context.create(settings.model_copy(update={"max_resolution": 400}), run_id="test/bad")
    yield context
    context.close()


# Good input -------------------------------------------------------------------------------------


def test_ingest_cuts_clips_samples_frames_and_writes_meta(ctx: Context, landing: list[str]) -> None:
    assert discover(ctx) == sorted(landing)
    report = ingest(ctx, clip_seconds=1.0, sample_fps=2.0)

    video_ids = [_video_id(ctx.store, key) for key in sorted(landing)]
    assert report.videos == video_ids
    assert report.clips == [f"{vid}-{start:07d}" for vid in video_ids for start in (0, 10, 20)]
    assert (report.existing_clips, report.skipped_videos, report.quarantined) == ([], [], [])
    assert report.summary() == "Ingested 2 videos into 6 new clips."

    key = sorted(landing)[0]
    for start in (0, 10, 20):
        clip_id = f"{video_ids[0]}-{start:07d}"
        assert ctx.store.list(f"clips/{clip_id}") == [
            f"clips/{clip_id}/clip.mp4",
            f"clips/{clip_id}/frames/000000.jpg",
            f"clips/{clip_id}/frames/000005.jpg",
            f"clips/{clip_id}/meta.json",
        ]
        meta = read_meta(ctx.store, clip_id)
        assert (meta.start_frame, meta.end_frame, meta.n_frames) == (start, start + 10, 10)
        assert meta.frame_times == pytest.approx([(start + i) / 10 for i in range(10)])
        assert (meta.start_time, meta.end_time) == pytest.approx((start / 10, start / 10 + 1.0))
        assert (meta.fps, meta.width, meta.height) == (10.0, 320, 240)
        assert meta.sampled == [0, 5]
        assert meta.encoding == "reencode"
        assert meta.source_uri == ctx.store.uri(key)
        assert meta.camera == "cam01"
        clip_start = _recorded_at(key) + timedelta(seconds=start / 10)
        assert meta.recorded_at == clip_start.isoformat().replace("+00:00", "Z")
        doc = ctx.store.read_json(meta_key(clip_id))
        assert doc["schema"] == "dataengine.clip-meta/1"
        assert doc["n_frames"] == 10


def test_sampled_frames_and_clip_video_match_the_source(ctx: Context, landing: list[str]) -> None:
    ingest(ctx, clip_seconds=1.0, sample_fps=2.0)
    key = sorted(landing)[1]
    clip_id = f"{_video_id(ctx.store, key)}-0000010"
    with ctx.store.local_path(key) as source_path:
        source = _decoded_frames(source_path)
    with ctx.store.local_path(f"clips/{clip_id}/clip.mp4") as clip_path:
        clip = _decoded_frames(clip_path)
    assert len(source) == 30
    assert len(clip) == 10
    assert clip[0].shape == (240, 320, 3)
    for index in (0, 5):
        jpeg = read_frame(ctx.store, clip_id, index).astype(float)
        assert np.abs(jpeg - source[10 + index]).mean() < 4  # the right frame, after JPEG
        assert np.abs(jpeg - source[index]).mean() > np.abs(jpeg - source[10 + index]).mean()
    assert np.abs(clip[7].astype(float) - source[17]).mean() < 4


def test_lineage_rows_after_ingest(ctx: Context, landing: list[str]) -> None:
    ingest(ctx, clip_seconds=1.0, sample_fps=2.0)
    with ctx.db.session() as session:
        for key, camera in zip(sorted(landing), ("cam01", "cam02"), strict=True):
            video = get_video(session, _video_id(ctx.store, key))
            assert video is not None
            assert (video.status, video.error) == ("ingested", None)
            assert (video.fps, video.width, video.height) == (10.0, 320, 240)
            assert video.duration == pytest.approx(3.0)
            assert video.camera == camera
            assert video.uri == ctx.store.uri(key)
            assert video.recorded_at == _recorded_at(key)
            clips = list_clips(session, video_id=video.id)
            assert [(c.start_frame, c.end_frame, c.n_frames, c.stage) for c in clips] == [
                (0, 10, 10, "ingested"),
                (10, 20, 10, "ingested"),
                (20, 30, 10, "ingested"),
            ]
            for clip in clips:
                assert clip.uri == ctx.store.uri(f"clips/{clip.id}")
                events = clip_events(session, clip.id)
                assert [(e.stage, e.status, e.run_id) for e in events] == [("ingested", "ok", "test/run")]
                assert events[0].details["n_sampled"] == 2


def test_rerun_adds_no_rows_or_objects(ctx: Context, landing: list[str]) -> None:
    ingest(ctx, clip_seconds=1.0)
    counts, objects = _counts(ctx.db), _snapshot(ctx.store)
    assert counts == {"videos": 2, "clips": 6, "clip_events": 6, "quarantine": 0}

    assert discover(ctx) == []
    again = ingest(ctx, clip_seconds=1.0)
    assert (again.videos, again.clips, again.skipped_videos) == ([], [], [])
    named = ingest(ctx, landing, clip_seconds=1.0)
    assert sorted(named.skipped_videos) == sorted(_video_id(ctx.store, key) for key in landing)
    assert named.clips == []
    assert named.summary() == "Skipped 2 videos already ingested."
    # The same bytes under another name are the same video: nothing to discover.
    ctx.store.write_bytes("landing/cam09/2026-11-23/120000.mp4", ctx.store.read_bytes(landing[0]))
    assert discover(ctx) == []
    assert _counts(ctx.db) == counts
    # Only the hash cache learnt the new name.
    outputs = ("clips/", "quarantine/")
    assert {k: v for k, v in _snapshot(ctx.store).items() if k.startswith(outputs)} == {
        k: v for k, v in objects.items() if k.startswith(outputs)
    }


def test_local_file_partial_last_clip_and_every_frame(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "outside" / "cam09" / "2026-12-01" / "101500.mp4"
    render_video(path, scene=SyntheticScene(seed=3, n_frames=25, fps=10.0))
    report = ingest(ctx, [str(path)], clip_seconds=1.0, sample_fps=0.0)
    video_id = video_id_for(hashlib.sha256(path.read_bytes()).hexdigest())
    assert report.clips == [f"{video_id}-0000000", f"{video_id}-0000010", f"{video_id}-0000020"]
    last = read_meta(ctx.store, f"{video_id}-0000020")
    assert (last.start_frame, last.end_frame, last.n_frames) == (20, 25, 5)
    assert last.sampled == [0, 1, 2, 3, 4]
    assert len(last.frame_times) == 5
    assert last.source_uri == f"file://{path}"
    assert last.camera == "cam09"
    assert last.recorded_at == "2026-12-01T10:15:02Z"
    with ctx.db.session() as session:
        video = get_video(session, video_id)
        assert video is not None
        assert (video.uri, video.status) == (f"file://{path}", "ingested")
        assert video.duration == pytest.approx(2.5)
    assert ingest(ctx, [f"file://{path}"]).skipped_videos == [video_id]


def test_killed_run_leaves_no_meta_and_rerun_redoes_the_clip(
    ctx: Context, landing: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = sorted(landing)[0]
    video_id = _video_id(ctx.store, key)
    real_finish = ClipWriter.finish
    calls = []

    def dying_finish(self: ClipWriter, **kwargs: Any) -> Any:
        calls.append(self.clip_id)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_finish(self, **kwargs)

    monkeypatch.setattr(ClipWriter, "finish", dying_finish)
    with pytest.raises(KeyboardInterrupt):
        ingest(ctx, [key], clip_seconds=1.0)
    monkeypatch.undo()
    assert ctx.store.exists(meta_key(f"{video_id}-0000000"))
    assert not ctx.store.exists(meta_key(f"{video_id}-0000010"))
    assert not ctx.store.list(f"clips/{video_id}-0000010")  # an interrupted clip is cleaned up
    with ctx.db.session() as session:
        video = get_video(session, video_id)
        assert video is not None
        assert video.status == "ingesting"
    assert discover(ctx) == sorted(landing)

    report = ingest(ctx, [key], clip_seconds=1.0)
    assert report.existing_clips == [f"{video_id}-0000000"]
    assert report.clips == [f"{video_id}-0000010", f"{video_id}-0000020"]
    assert report.videos == [video_id]
    assert _counts(ctx.db) == {"videos": 1, "clips": 3, "clip_events": 3, "quarantine": 0}
    redone = read_meta(ctx.store, f"{video_id}-0000010")
    assert (redone.n_frames, redone.sampled) == (10, [0, 5])  # settings: 2 of 10 fps, every 5th frame


def test_progress_counts_the_inputs_and_names_each(ctx: Context, landing: list[str]) -> None:
    progress = ProgressLog()
    report = ingest(ctx, landing[:1], clip_seconds=3.0, progress=progress)
    assert len(report.clips) == 1
    assert progress.phases == [("ingest", 1)]
    assert progress.advances == [(0, f"ingest {landing[0].rsplit('/', 1)[-1]}"), (1, None)]


def test_invalid_parameters_are_refused(ctx: Context) -> None:
    with pytest.raises(ConfigError, match="clip_seconds"):
        ingest(ctx, [], clip_seconds=0.0)


# Bad input --------------------------------------------------------------------------------------


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _bad_landing(store: ObjectStore, tmp_path: Path) -> dict[str, str]:
    """Bad videos in the landing area, by what is wrong with them."""
    good = tmp_path / "good.mp4"
    render_video(good, scene=SyntheticScene(seed=2, n_frames=10))
    big = tmp_path / "big.mp4"
    render_video(big, scene=SyntheticScene(seed=2, n_frames=3, width=640, height=480))
    audio = tmp_path / "audio.mp4"
    _audio_only(audio)
    codec = tmp_path / "codec.mp4"
    render_video(codec, scene=SyntheticScene(seed=3, n_frames=5))
    unknown_codec(codec)
    broken = tmp_path / "broken.mp4"
    render_variant(broken, scene=SyntheticScene(seed=4, n_frames=10, fps=10.0), gop=10)
    corrupt_frames(broken, [3])
    keys = {
        "empty": "landing/bad/2026-11-22/000001.mp4",
        "text": "landing/bad/2026-11-22/000002.mp4",
        "truncated": "landing/bad/2026-11-22/000003.mp4",
        "audio": "landing/bad/2026-11-22/000004.mp4",
        "big": "landing/bad/2026-11-22/000005.mp4",
        "garbage": "landing/bad/2026-11-22/000006.mp4",
        "codec": "landing/bad/2026-11-22/000007.mp4",
        "broken": "landing/bad/2026-11-22/000008.mp4",
    }
    store.write_bytes(keys["empty"], b"")
    store.write_bytes(keys["text"], b"this is a note, not a video\n")
    data = good.read_bytes()
    store.write_bytes(keys["truncated"], data[: len(data) * 6 // 10])
    store.put_file(audio, keys["audio"])
    store.put_file(big, keys["big"])
    store.put_file(codec, keys["codec"])
    store.put_file(broken, keys["broken"])
    store.write_bytes(
        keys["garbage"], np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    )
    return keys


def test_bad_inputs_are_quarantined_and_the_batch_goes_on(small_ctx: Context, tmp_path: Path) -> None:
    ctx = small_ctx
    good = write_landing(ctx.store, n_videos=1, seed=9, seconds=1.0, with_events=False)[0]
    bad = _bad_landing(ctx.store, tmp_path)
    missing = str(tmp_path / "no-such-video.mp4")

    report = ingest(ctx, [*bad.values(), good, missing], clip_seconds=1.0)

    assert report.videos == [_video_id(ctx.store, good)]
    assert len(report.clips) == 1
    reasons = {item.input: item.reason for item in report.quarantined}
    expected = {
        "empty": "is empty (0 bytes)",
        "text": "is a text file, not a video",
        "truncated": "is truncated",
        "audio": "has no video stream (streams found: audio)",
        "big": "has resolution 640x480, above the limit of 400 pixels",
        "garbage": "is not a readable video: Invalid data found when processing input",
        "codec": "has a video stream in a codec FFmpeg cannot decode (unsupported codec)",
        "broken": "is corrupt in frames 3-9 (0.300-1.000 s), dropped clips ",
    }
    for what, key in bad.items():
        uri = ctx.store.uri(key)
        assert uri in reasons, what
        assert reasons[uri].startswith(uri)
        assert expected[what] in reasons[uri]
    assert reasons[missing] == f"{missing} does not exist or is not a file"
    assert all(name in report.summary() for name in bad.values())
    assert report.summary().startswith("Ingested 1 video into 1 new clip; quarantined 9 inputs: ")
    assert reasons[ctx.store.uri(bad["broken"])].endswith("; no clip decodes cleanly")

    empty_id = hashlib.sha256(b"").hexdigest()[:16]
    record = ctx.store.read_json(quarantine_key(empty_id))
    assert record["video_id"] == empty_id
    assert record["input"] == ctx.store.uri(bad["empty"])
    assert "is empty (0 bytes)" in record["reason"]
    assert record["at"].endswith("Z")
    with ctx.db.session() as session:
        for key in bad.values():
            video = get_video(session, _video_id(ctx.store, key))
            assert video is not None
            assert video.status == "quarantined"
            assert video.error == reasons[ctx.store.uri(key)]
            assert ctx.store.exists(quarantine_key(video.id))
        items = list_quarantine(session)
        assert sorted(item.input for item in items) == sorted(reasons)
        assert all(item.kind == "video" and item.run_id == "test/bad" for item in items)
        missing_item = next(item for item in items if item.input == missing)
        assert missing_item.video_id is None

    counts = _counts(ctx.db)
    assert counts == {"videos": 9, "clips": 1, "clip_events": 1, "quarantine": 9}
    ingest(ctx, [*bad.values(), missing], clip_seconds=1.0)
    assert _counts(ctx.db) == counts


def test_discover_skips_ingested_and_quarantined(small_ctx: Context, tmp_path: Path) -> None:
    ctx = small_ctx
    first = write_landing(ctx.store, n_videos=1, seed=4, seconds=1.0, with_events=False)
    bad = _bad_landing(ctx.store, tmp_path)
    assert discover(ctx) == sorted([*first, *bad.values()])

    report = ingest(ctx)
    assert len(report.videos) == 1
    assert len(report.quarantined) == len(bad)
    assert discover(ctx) == []

    later = write_landing(
        ctx.store, n_videos=1, seed=4, seconds=1.0, with_events=False, start_day="2026-11-30"
    )
    assert later != first
    assert ctx.store.read_bytes(later[0]) == ctx.store.read_bytes(first[0])  # same seed, same bytes
    assert discover(ctx) == []
    newer = write_landing(ctx.store, n_videos=1, seed=77, seconds=1.0, prefix="landing/extra")
    assert discover(ctx) == newer


@pytest.mark.s3
def test_ingest_from_s3(settings: Settings, s3_store: ObjectStore, sqlite_db: Database) -> None:
    ctx = Context(settings=settings, store=s3_store, db=sqlite_db, run_id="test/s3")
    keys = write_landing(s3_store, n_videos=1, seed=1, seconds=2.0, with_events=False)
    report = ingest(ctx, clip_seconds=1.0)
    video_id = _video_id(s3_store, keys[0])
    assert report.clips == [f"{video_id}-0000000", f"{video_id}-0000010"]
    meta = read_meta(s3_store, f"{video_id}-0000010")
    assert meta.source_uri == s3_store.uri(keys[0])
    assert meta.source_uri.startswith("s3://")
    assert meta.sampled == [0, 5]
    assert read_frame(s3_store, f"{video_id}-0000010", 5).shape == (240, 320, 3)
    assert discover(ctx) == []
