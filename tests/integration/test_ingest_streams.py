"""Ingest on awkward real streams: stream copy on keyframes, B-frames, VFR, rotation, late start,
corruption in the middle, an unknown codec, scene cuts and near-identical clips."""

from __future__ import annotations

import hashlib
import itertools
from contextlib import closing
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from dataengine.clips import ClipMeta, read_frame, read_meta, video_id_for, video_key
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import ingest, quarantine_key
from dataengine.lineage.clips import clip_events
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.videos import get_video
from dataengine.synthetic import SyntheticScene
from dataengine.synthetic.variants import corrupt_frames, render_variant, unknown_codec


def _video_id(path: Path) -> str:
    return video_id_for(hashlib.sha256(path.read_bytes()).hexdigest())


def _source_times(path: Path) -> list[float]:
    """Every frame's time in seconds from the first, decoded by PyAV on its own."""
    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return [t - times[0] for t in times]


def _clip_frames(ctx: Context, clip_id: str) -> list[np.ndarray[Any, Any]]:
    with ctx.store.local_path(video_key(clip_id)) as path, av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _metas(ctx: Context, clip_ids: list[str]) -> list[ClipMeta]:
    return [read_meta(ctx.store, clip_id) for clip_id in clip_ids]


def _context(settings: Settings, **changes: Any) -> Context:
    return Context.create(settings.model_copy(update=changes), run_id="test/streams")


def test_keyframe_gop_gives_stream_copies_that_cover_every_frame(ctx: Context, tmp_path: Path) -> None:
    """GOP of 1 s with B-frames: every 1 s clip is a stream copy; frames add up to the source's."""
    path = tmp_path / "cam03" / "2026-11-22" / "090000.mp4"
    render_variant(path, scene=SyntheticScene(seed=4, n_frames=35, fps=10.0), gop=10, bframes=2)
    report = ingest(ctx, [str(path)], clip_seconds=1.0, sample_fps=2.0)
    metas = _metas(ctx, report.clips)
    assert [(m.start_frame, m.end_frame, m.encoding) for m in metas] == [
        (0, 10, "copy"),
        (10, 20, "copy"),
        (20, 30, "copy"),
        (30, 35, "copy"),
    ]
    source = _source_times(path)
    assert sum(m.n_frames for m in metas) == len(source) == 35
    assert [t for m in metas for t in m.frame_times] == pytest.approx(source)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    for meta in metas:
        frames = _clip_frames(ctx, meta.clip_id)
        assert len(frames) == meta.n_frames  # the copied clip holds exactly its frames...
        assert np.array_equal(frames[0], decoded[meta.start_frame])  # ...bit for bit
        assert np.array_equal(frames[-1], decoded[meta.end_frame - 1])
        for index in meta.sampled:
            jpeg = read_frame(ctx.store, meta.clip_id, index).astype(float)
            assert np.abs(jpeg - decoded[meta.start_frame + index]).mean() < 4
    with ctx.db.session() as session:
        events = clip_events(session, metas[1].clip_id)
        assert events[0].details["encoding"] == "copy"
        assert events[0].details["split"] == "fixed"


def test_boundaries_move_to_a_nearby_keyframe(settings: Settings, tmp_path: Path) -> None:
    """GOP 12 frames at 10 fps, 1 s clips, 0.5 s tolerance: cuts at 12 and 24 (copies), then at 30."""
    path = tmp_path / "gop12.mp4"
    render_variant(path, scene=SyntheticScene(seed=5, n_frames=40, fps=10.0), gop=12)
    with closing(_context(settings, keyframe_tolerance=0.5)) as ctx:
        metas = _metas(ctx, ingest(ctx, [str(path)], clip_seconds=1.0).clips)
    assert [(m.start_frame, m.end_frame, m.encoding) for m in metas] == [
        (0, 12, "copy"),
        (12, 24, "copy"),
        (24, 30, "reencode"),  # 30 is not a keyframe, and 36 is 0.6 s away from it
        (30, 40, "reencode"),
    ]
    assert sum(m.n_frames for m in metas) == 40


def test_variable_frame_rate_keeps_each_frame_time(ctx: Context, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.choice([0.04, 0.1, 0.25], size=30)).round(3).tolist()
    times = [0.0, *times[:-1]]
    path = tmp_path / "vfr.mp4"
    render_variant(path, scene=SyntheticScene(seed=6, n_frames=30, fps=10.0), times=times)
    report = ingest(ctx, [str(path)], clip_seconds=1.0, sample_fps=2.0)
    metas = _metas(ctx, report.clips)
    assert [t for m in metas for t in m.frame_times] == pytest.approx(times, abs=1e-4)
    assert sum(m.n_frames for m in metas) == 30
    for k, meta in enumerate(metas[:-1]):
        assert meta.frame_times[0] >= k * 1.0 - 0.05  # each clip starts on the 1 s grid of video time
        assert meta.end_time == pytest.approx(metas[k + 1].start_time)
        chosen = [meta.frame_times[i] - meta.start_time for i in meta.sampled]
        assert chosen[0] == pytest.approx(0.0)
        assert all(b - a >= 0.25 for a, b in itertools.pairwise(chosen))  # ~2 per second
    for meta in metas:
        assert len(_clip_frames(ctx, meta.clip_id)) == meta.n_frames


def test_rotated_video_gives_upright_frames(ctx: Context, tmp_path: Path) -> None:
    scene = SyntheticScene(seed=7, n_frames=10, fps=10.0, width=320, height=240)
    path = tmp_path / "rotated.mp4"
    render_variant(path, scene=scene, rotation=90)
    report = ingest(ctx, [str(path)], clip_seconds=1.0, sample_fps=2.0)
    meta = read_meta(ctx.store, report.clips[0])
    assert (meta.width, meta.height, meta.extra["rotation"]) == (240, 320, 90)
    jpeg = read_frame(ctx.store, meta.clip_id, 0).astype(float)
    assert jpeg.shape == (320, 240, 3)
    with av.open(str(path)) as container:
        raw = next(iter(container.decode(video=0))).to_ndarray(format="rgb24")
    assert np.abs(jpeg - np.rot90(raw, 1)).mean() < 4  # counter-clockwise, as FFmpeg displays it
    assert np.abs(jpeg - np.rot90(raw, -1)).mean() > 10
    with ctx.db.session() as session:
        video = get_video(session, _video_id(path))
        assert video is not None
        assert (video.width, video.height) == (240, 320)


def test_jpeg_size_cap(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "cap.mp4"
    render_variant(path, scene=SyntheticScene(seed=13, n_frames=5, fps=10.0, width=320, height=240))
    with closing(_context(settings, jpeg_max_side=160, jpeg_quality=70)) as ctx:
        [clip_id] = ingest(ctx, [str(path)], clip_seconds=1.0).clips
        meta = read_meta(ctx.store, clip_id)
        assert (meta.width, meta.height) == (320, 240)  # the video's size
        assert (meta.extra["frame_width"], meta.extra["frame_height"]) == (160, 120)
        assert read_frame(ctx.store, clip_id, 0).shape == (120, 160, 3)


def test_stream_starting_late_is_numbered_from_zero(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "late.ts"
    render_variant(
        path,
        scene=SyntheticScene(seed=8, n_frames=25, fps=10.0),
        start_seconds=7.5,
        container_format="mpegts",
    )
    report = ingest(ctx, [str(path)], clip_seconds=1.0, sample_fps=2.0)
    metas = _metas(ctx, report.clips)
    assert [(m.start_frame, m.n_frames) for m in metas] == [(0, 10), (10, 10), (20, 5)]
    assert metas[0].frame_times[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert metas[0].extra["source_time_offset"] == pytest.approx(7.5, abs=1.5)  # + the muxer's delay
    assert metas[2].start_time == pytest.approx(2.0)
    assert len(_clip_frames(ctx, metas[0].clip_id)) == 10


def test_corrupt_packets_keep_clean_clips_and_record_the_gap(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "cam04" / "2026-11-22" / "100000.mp4"
    render_variant(path, scene=SyntheticScene(seed=9, n_frames=50, fps=10.0), gop=10)
    corrupt_frames(path, [23, 24])
    video_id = _video_id(path)
    report = ingest(ctx, [str(path)], clip_seconds=1.0, sample_fps=2.0)

    kept = [f"{video_id}-{start:07d}" for start in (0, 10, 30, 40)]
    assert report.clips == kept
    assert report.videos == [video_id]
    [item] = report.quarantined
    assert item.video_id == video_id
    assert item.reason.startswith(f"file://{path} is corrupt in frames 23-29 (2.300-3.000 s)")
    assert f"dropped clips {video_id}-0000020" in item.reason
    assert not ctx.store.list(f"clips/{video_id}-0000020")  # nothing of the dropped clip is left
    record = ctx.store.read_json(quarantine_key(video_id))
    assert record["gaps"] == [
        {
            "start_frame": 23,
            "end_frame": 30,
            "start_time": 2.3,
            "end_time": 3.0,
            "dropped_clips": [f"{video_id}-0000020"],
        }
    ]
    with ctx.db.session() as session:
        video = get_video(session, video_id)
        assert video is not None
        assert (video.status, video.error) == ("ingested", item.reason)
        [gap] = list_quarantine(session)
        assert (gap.kind, gap.input, gap.video_id) == ("gap", f"file://{path}#frames=23-29", video_id)
    assert ingest(ctx, [str(path)]).skipped_videos == [video_id]


def test_unknown_codec_and_codec_not_accepted_are_quarantined(settings: Settings, tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.mp4"
    render_variant(unknown, scene=SyntheticScene(seed=1, n_frames=5, fps=10.0))
    unknown_codec(unknown)
    refused = tmp_path / "h264.mp4"
    render_variant(refused, scene=SyntheticScene(seed=2, n_frames=5, fps=10.0))
    with closing(_context(settings, ingest_codecs=["hevc"])) as ctx:
        report = ingest(ctx, [str(unknown), str(refused)])
    reasons = {item.input: item.reason for item in report.quarantined}
    assert reasons[f"file://{unknown}"] == (
        f"file://{unknown} has a video stream in a codec FFmpeg cannot decode (unsupported codec)"
    )
    assert reasons[f"file://{refused}"] == (
        f"file://{refused} uses the unsupported codec 'h264'; "
        "accepted codecs are hevc (setting ingest_codecs)"
    )
    assert report.clips == []


def _static_then_event(path: Path) -> None:
    """4 s of an unchanging picture, then a hard cut to another picture at frame 46."""
    scene = SyntheticScene(seed=11, n_frames=60, fps=10.0)
    first = next(iter(scene.frames()))[1]
    other = np.ascontiguousarray(255 - first)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"crf": "20", "g": "10", "keyint_min": "10", "sc_threshold": "0", "bf": "0"}
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(first if i < 46 else other, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_duplicates_are_dropped_and_scene_cuts_split(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "static.mp4"
    _static_then_event(path)
    video_id = _video_id(path)
    changes = {"drop_duplicate_clips": True, "split_on_scene_cuts": True, "min_clip_seconds": 0.5}
    with closing(_context(settings, **changes)) as ctx:
        report = ingest(ctx, [str(path)], clip_seconds=2.0, sample_fps=5.0)
        # Duplicates are judged on the sampled frames: 40-50 samples 46 and 48, which differ.
        # 0-20 kept; 20-40 the same picture: dropped; the cut at 46 moves to the keyframe at 50.
        assert report.clips == [f"{video_id}-0000000", f"{video_id}-0000040", f"{video_id}-0000050"]
        assert report.dropped_duplicates == [f"{video_id}-0000020"]
        metas = _metas(ctx, report.clips)
        assert [(m.start_frame, m.end_frame) for m in metas] == [(0, 20), (40, 50), (50, 60)]
        with ctx.db.session() as session:
            first = clip_events(session, f"{video_id}-0000000")
            assert [(e.status, e.details.get("decision")) for e in first] == [
                ("ok", None),
                ("skipped", "dropped_duplicate"),
            ]
            assert first[1].details["clip_id"] == f"{video_id}-0000020"
            assert first[1].details["difference"] < 3.0
            cut = clip_events(session, f"{video_id}-0000050")
            assert cut[0].details["split"] == "scene_cut"
        # A rerun of the video (as after a kill: still "ingesting") writes and records nothing twice.
        with ctx.db.session() as session:
            video = get_video(session, video_id)
            assert video is not None
            video.status = "ingesting"
        again = ingest(ctx, [str(path)], clip_seconds=2.0, sample_fps=5.0)
        assert again.existing_clips == report.clips
        with ctx.db.session() as session:
            assert len(clip_events(session, f"{video_id}-0000000")) == 2
