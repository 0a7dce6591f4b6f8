"""Awkward but valid (or deliberately damaged) videos for ingest tests: VFR, rotated, late-starting,
keyframe-regular, corrupt in the middle, or in a codec no decoder knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dataengine.synthetic.scene import SyntheticScene

_TIME_BASE = Fraction(1, 90000)


def render_variant(
    path: Path,
    *,
    scene: SyntheticScene,
    times: Sequence[float] | None = None,
    gop: int | None = None,
    bframes: int = 0,
    rotation: int = 0,
    start_seconds: float = 0.0,
    container_format: str = "mp4",
) -> list[float]:
    """Encode ``scene`` to H.264 at ``path``; returns each frame's presentation time in seconds.

    ``times`` gives every frame's time (variable frame rate; default ``index / fps``), ``gop`` a fixed
    keyframe interval in frames, ``rotation`` a display rotation (counter-clockwise degrees), and
    ``start_seconds`` the first frame's timestamp (e.g. with ``container_format="mpegts"``).
    """
    stamps = list(times) if times is not None else [i / scene.fps for i in range(scene.n_frames)]
    options: dict[str, str] = {"crf": "20", "preset": "veryfast", "bf": str(bframes), "threads": "1"}
    if gop is not None:
        options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=Fraction(scene.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.codec_context.time_base = _TIME_BASE
        stream.options = dict[str, object](options)
        if rotation:
            stream.set_display_rotation(rotation)
        for (_, rgb, _boxes), stamp in zip(scene.frames(), stamps, strict=False):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = round((stamp + start_seconds) / _TIME_BASE), _TIME_BASE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return stamps[: scene.n_frames]


def corrupt_frames(path: Path, frames: Sequence[int], *, seed: int = 0) -> None:
    """Overwrite the payload of the packets of ``frames`` (presentation order) with random bytes.

    The container stays intact: only the compressed data of those frames is damaged, as a bad sector
    or a lossy network link would do.
    """
    with av.open(str(path)) as container:
        packets = [(p.pts, p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos is not None]
    by_time = sorted(packets, key=lambda p: p[0] if p[0] is not None else -1)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for number in frames:
        _, pos, size = by_time[number]
        start = pos + min(8, size // 2)  # Keep the NAL length prefix, so the damage is inside the frame.
        data[start : pos + size] = rng.integers(0, 256, pos + size - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def unknown_codec(path: Path) -> None:
    """Rename the video's codec tag in an MP4's sample description to one no decoder knows."""
    data = bytearray(path.read_bytes())
    stsd = data.find(b"stsd")
    tag = data.find(b"avc1", stsd)
    if stsd < 0 or tag < 0:
        raise ValueError(f"{path} has no H.264 ('avc1') sample description to rename")
    data[tag : tag + 4] = b"zzzz"
    path.write_bytes(bytes(data))
