"""Checking and decoding input videos with PyAV, one frame at a time.

Every problem with the input is raised as :class:`InputRejectedError` whose ``reason`` names the file
and says what is wrong, so the caller can quarantine it and go on with the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.container import InputContainer
from av.video.stream import VideoStream

from dataengine.errors import InputRejectedError

_SNIFF_BYTES = 4096
# Top-level box types that open an ISO base media file (MP4, MOV, M4V).
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The video stream of an input: frame size in pixels, frames per second, codec name, and the time
    in seconds of its first frame (not always 0, e.g. in MPEG-TS)."""

    stream: VideoStream
    width: int
    height: int
    fps: float
    codec: str
    start_time: float


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded frame: its number in the video (from 0) and its time in seconds."""

    index: int
    time: float
    frame: av.VideoFrame


def sniff(path: Path, *, name: str) -> None:
    """Reject empty files, text files and truncated MP4/MOV files before FFmpeg sees them."""
    size = path.stat().st_size
    if size == 0:
        raise InputRejectedError(name, f"{name} is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        if _looks_like_text(head):
            preview = head[:40].decode("utf-8", errors="replace").strip()
            raise InputRejectedError(name, f"{name} is a text file, not a video (it starts with {preview!r})")
        if head[4:8] in _ISO_FIRST_BOXES:
            _check_iso_boxes(handle, size, name=name)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def _check_iso_boxes(handle: BinaryIO, size: int, *, name: str) -> None:
    """Walk the top-level boxes: each must fit in the file, and the index box ``moov`` must be there."""
    offset, seen = 0, set()
    while offset < size:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            raise InputRejectedError(
                name, f"{name} is truncated: it ends inside a box header at byte {offset}"
            )
        box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
        if box_size == 1 and len(header) == 16:
            box_size = int.from_bytes(header[8:16], "big")
        elif box_size == 0:
            box_size = size - offset  # The last box runs to the end of the file.
        if box_size < 8:
            raise InputRejectedError(
                name, f"{name} is corrupt: box {box_type!r} at byte {offset} has size {box_size}"
            )
        if offset + box_size > size:
            raise InputRejectedError(
                name,
                f"{name} is truncated: its {box_type!r} box needs {box_size} bytes from byte {offset}, "
                f"but the file ends {size - offset} bytes after it starts",
            )
        seen.add(box_type)
        offset += box_size
    if "moov" not in seen:
        raise InputRejectedError(name, f"{name} is truncated or incomplete: it has no 'moov' (index) box")


@contextmanager
def open_video(path: Path, *, name: str) -> Iterator[InputContainer]:
    """The input container at ``path``; FFmpeg's refusal becomes :class:`InputRejectedError`."""
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise InputRejectedError(name, f"{name} is not a readable video: {_ffmpeg_message(exc)}") from exc
    with container:
        yield container


def probe(container: InputContainer, *, name: str, max_resolution: int) -> VideoInfo:
    """The first video stream and its properties; inputs without one, or too large, are rejected."""
    if not container.streams.video:
        kinds = ", ".join(sorted({str(stream.type) for stream in container.streams})) or "none"
        raise InputRejectedError(name, f"{name} has no video stream (streams found: {kinds})")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise InputRejectedError(name, f"{name} has a video stream without a frame size")
    if max(width, height) > max_resolution:
        raise InputRejectedError(
            name,
            f"{name} has resolution {width}x{height}, above the limit of {max_resolution} pixels "
            "on the longest side (setting max_resolution)",
        )
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate is None or rate <= 0:
        raise InputRejectedError(name, f"{name} has a video stream without a frame rate")
    stream.thread_type = "AUTO"
    start_time = 0.0
    if stream.start_time is not None and stream.time_base is not None:
        start_time = float(stream.start_time * stream.time_base)
    return VideoInfo(
        stream=stream,
        width=width,
        height=height,
        fps=float(Fraction(rate)),
        codec=stream.name or "unknown",
        start_time=start_time,
    )


def decode_frames(container: InputContainer, info: VideoInfo, *, name: str) -> Iterator[DecodedFrame]:
    """The stream's frames in presentation order, one at a time; decoding errors reject the input."""
    index = 0
    try:
        for frame in container.decode(info.stream):
            time = float(frame.time) if frame.time is not None else index / info.fps
            yield DecodedFrame(index=index, time=time, frame=frame)
            index += 1
    except av.FFmpegError as exc:
        raise InputRejectedError(
            name, f"{name} is corrupt: decoding failed after {index} frames: {_ffmpeg_message(exc)}"
        ) from exc
    if index == 0:
        raise InputRejectedError(name, f"{name} has a video stream with no decodable frames")


def _ffmpeg_message(exc: av.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc)
