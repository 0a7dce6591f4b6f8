"""Pure ingest logic: the frame index, clean keyframes, the clip plan, path patterns, fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dataengine.errors import ConfigError
from dataengine.ingest.frames import scaled_size
from dataengine.ingest.hashcache import HashCache
from dataengine.ingest.index import FrameIndex, build_index
from dataengine.ingest.plan import COPY, REENCODE, encoding_for, plan_clips
from dataengine.ingest.sources import VideoSource, compile_path_pattern, recording_info
from dataengine.storage import ObjectStore, fingerprint


def _cfr(n: int, *, gop: int, fps: float = 10.0) -> FrameIndex:
    """An index of ``n`` frames in decode order = presentation order, a keyframe every ``gop``."""
    pts = np.arange(n, dtype=np.int64)
    key = pts % gop == 0
    return build_index(pts, key, time_base=Fraction(1) / Fraction(fps), fps=fps)


def test_b_frames_are_put_in_presentation_order() -> None:
    # I0 P3 B1 B2 | I4 P7 B5 B6 in decode order (closed GOPs).
    decode_pts = np.array([0, 3, 1, 2, 4, 7, 5, 6], dtype=np.int64)
    key = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=np.bool_)
    index = build_index(decode_pts, key, time_base=Fraction(1, 10), fps=10.0)
    assert index.pts.tolist() == list(range(8))
    assert index.times.tolist() == pytest.approx([i / 10 for i in range(8)])
    assert np.flatnonzero(index.clean).tolist() == [0, 4]
    assert index.number(5) == 5
    assert index.number(99) is None
    assert index.next_keyframe(1) == 4
    assert index.end_time(7) == pytest.approx(0.8)


def test_open_gop_keyframe_is_not_clean() -> None:
    # I3 shows after B1 B2 that come after it in decode order: cutting at it would lose them.
    decode_pts = np.array([0, 3, 1, 2, 6, 4, 5], dtype=np.int64)
    key = np.array([1, 1, 0, 0, 0, 0, 0], dtype=np.bool_)
    index = build_index(decode_pts, key, time_base=Fraction(1, 10), fps=10.0)
    assert np.flatnonzero(index.keyframe).tolist() == [0, 3]
    assert np.flatnonzero(index.clean).tolist() == [0]


def test_missing_timestamps_number_frames_by_arrival() -> None:
    index = build_index(
        np.array([-1, -1, -1], dtype=np.int64),
        np.array([1, 0, 0], dtype=np.bool_),
        time_base=Fraction(1),
        fps=5.0,
    )
    assert index.by_arrival
    assert index.times.tolist() == pytest.approx([0.0, 0.2, 0.4])
    assert encoding_for(index, start=0, end=3, copyable=True) == REENCODE


def test_plan_fixed_grid_and_partial_last_clip() -> None:
    plan = plan_clips(_cfr(25, gop=250), clip_seconds=1.0, tolerance=1.0)
    assert plan.starts == (0, 10, 20)
    assert [plan.end_of(s) for s in plan.starts] == [10, 20, 25]


def test_plan_snaps_to_keyframes_within_tolerance_without_drift() -> None:
    index = _cfr(60, gop=12)
    plan = plan_clips(index, clip_seconds=1.0, tolerance=0.25)
    # Nominal 10 -> keyframe 12 (0.2 s); 20, 30 and 40 have no keyframe within 0.25 s; 50 -> 48.
    assert plan.starts == (0, 12, 20, 30, 40, 48)
    encodings = [encoding_for(index, start=s, end=plan.end_of(s), copyable=True) for s in plan.starts]
    assert encodings == [COPY, REENCODE, REENCODE, REENCODE, REENCODE, COPY]
    assert encoding_for(index, start=0, end=12, copyable=False) == REENCODE


def test_plan_zero_tolerance_and_long_clips() -> None:
    assert plan_clips(_cfr(30, gop=7), clip_seconds=1.0, tolerance=0.0).starts == (0, 10, 20)
    assert plan_clips(_cfr(30, gop=7), clip_seconds=100.0, tolerance=1.0).starts == (0,)


def test_variable_frame_rate_plan_follows_time() -> None:
    times = [0.0, 0.3, 0.6, 0.9, 1.05, 1.1, 1.5, 2.2, 2.4]
    pts = np.array([round(t * 1000) for t in times], dtype=np.int64)
    index = build_index(pts, np.zeros(len(times), dtype=np.bool_), time_base=Fraction(1, 1000), fps=4.0)
    assert plan_clips(index, clip_seconds=1.0, tolerance=1.0).starts == (0, 4, 7)


def _local(path: str) -> VideoSource:
    return VideoSource(uri=f"file://{path}", path=Path(path))


def test_default_path_pattern() -> None:
    pattern = "{camera}/{date}/{time}.*"
    key = VideoSource(
        uri="s3://b/landing/cam01/2026-11-22/081500.mp4", key="landing/cam01/2026-11-22/081500.mp4"
    )
    assert recording_info(key, landing_prefix="landing", pattern=pattern) == (
        "cam01",
        datetime(2026, 11, 22, 8, 15, tzinfo=UTC),
    )
    other = VideoSource(uri="x", key="landing/cam01/clip.mp4")
    assert recording_info(other, landing_prefix="landing", pattern=pattern) == ("cam01", None)
    assert (
        recording_info(
            _local("/data/x/cam7/20261122/08-15-00.mkv"), landing_prefix="landing", pattern=pattern
        )[0]
        == "cam7"
    )
    assert recording_info(_local("/v.mp4"), landing_prefix="landing", pattern=pattern) == (None, None)


def test_custom_path_patterns() -> None:
    pattern = "{any}/{camera}_{datetime}.mp4"
    source = _local("/in/north/gate-2_2026-11-22T23-59-58.mp4")
    assert recording_info(source, landing_prefix="landing", pattern=pattern) == (
        "gate-2",
        datetime(2026, 11, 22, 23, 59, 58, tzinfo=UTC),
    )
    bad_date = _local("/in/north/gate_20261399T000000.mp4")
    assert recording_info(bad_date, landing_prefix="landing", pattern=pattern) == ("gate", None)
    with pytest.raises(ConfigError, match="unknown field"):
        compile_path_pattern("{camera}/{day}.mp4")


def test_fingerprints_and_cache(tmp_path: Path) -> None:
    assert fingerprint({"size": 3, "ETag": '"abc"'}) == "3:abc"
    assert fingerprint({"size": 3, "mtime": 1.5}) == "3:1.5"
    assert fingerprint({"size": 3}) is None
    store = ObjectStore(f"file://{tmp_path}")
    cache = HashCache(store)
    cache.put("landing/a/x.mp4", "3:1.5", "f" * 64)
    cache.put("landing/a/y.mp4", None, "e" * 64)  # no fingerprint: not remembered
    cache.save()
    again = HashCache(store)
    assert again.get("landing/a/x.mp4", "3:1.5") == "f" * 64
    assert again.get("landing/a/x.mp4", "4:1.5") is None
    assert again.get("landing/a/y.mp4", None) is None
    store.write_text(HashCache.shard_key("landing/a/x.mp4"), "not json")
    assert HashCache(store).get("landing/a/x.mp4", "3:1.5") is None  # a broken cache is only a miss


def test_two_caches_saving_one_folder_keep_both_entries(tmp_path: Path) -> None:
    """Mapped ingest tasks share a folder's shard: the second save must not drop the first's entries."""
    store = ObjectStore(f"file://{tmp_path}")
    first, second = HashCache(store), HashCache(store)
    assert first.get("landing/a/x.mp4", "3:1") is None  # both loaded the (empty) shard
    assert second.get("landing/a/y.mp4", "4:1") is None
    first.put("landing/a/x.mp4", "3:1", "a" * 64)
    second.put("landing/a/y.mp4", "4:1", "b" * 64)
    first.save()
    second.save()
    merged = HashCache(store)
    assert merged.get("landing/a/x.mp4", "3:1") == "a" * 64
    assert merged.get("landing/a/y.mp4", "4:1") == "b" * 64


def test_scaled_size() -> None:
    assert scaled_size(1920, 1080, None) == (1920, 1080)
    assert scaled_size(1920, 1080, 960) == (960, 540)
    assert scaled_size(1080, 1920, 640) == (360, 640)
    assert scaled_size(320, 240, 640) == (320, 240)
