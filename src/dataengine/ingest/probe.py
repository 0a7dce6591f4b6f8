"""Checking an input before decoding it: the file's bytes, its video stream, and its packet index.

Every problem with the input is raised as :class:`InputRejectedError` whose ``reason`` names the file
and says what is wrong, so the caller can quarantine it and go on with the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
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
# Container tags that name the camera, most specific first (QuickTime, then generic ones).
_CAMERA_TAGS = ("camera", "com.apple.quicktime.camera.identifier", "com.apple.quicktime.model", "model")


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The video stream of an input and what ingest needs to know about it.

    ``width`` and ``height`` are the displayed size (after ``rotation``, counter-clockwise degrees);
    ``coded_width`` and ``coded_height`` are the decoded frames' size.
    """

    stream: VideoStream
    coded_width: int
    coded_height: int
    fps: float
    codec: str
    rotation: int
    camera: str | None
    recorded_at: datetime | None

    @property
    def width(self) -> int:
        return self.coded_height if self.rotation % 180 else self.coded_width

    @property
    def height(self) -> int:
        return self.coded_width if self.rotation % 180 else self.coded_height


def sniff(path: Path, *, name: str) -> None:
    """Reject unreadable, empty, text and truncated MP4/MOV files before FFmpeg sees them."""
    try:
        _sniff(path, name=name)
    except FileNotFoundError as exc:
        raise InputRejectedError(name, f"{name} disappeared before it could be read") from exc
    except OSError as exc:
        raise InputRejectedError(name, f"{name} cannot be read: {exc.strerror or exc}") from exc


def _sniff(path: Path, *, name: str) -> None:
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
        raise InputRejectedError(name, f"{name} is not a readable video: {ffmpeg_message(exc)}") from exc
    with container:
        yield container


def probe(
    container: InputContainer, path: Path, *, name: str, max_resolution: int, codecs: list[str]
) -> VideoInfo:
    """The first video stream and its properties; refuses inputs without one, too large or unsupported."""
    if not container.streams.video:
        kinds = ", ".join(sorted({str(stream.type) for stream in container.streams})) or "none"
        raise InputRejectedError(name, f"{name} has no video stream (streams found: {kinds})")
    stream = container.streams.video[0]
    codec = _check_codec(stream, name=name, codecs=codecs)
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
    tags = {**{k.lower(): v for k, v in container.metadata.items()}, **stream.metadata}
    return VideoInfo(
        stream=stream,
        coded_width=width,
        coded_height=height,
        fps=float(Fraction(rate)),
        codec=codec,
        rotation=_first_frame_rotation(path),
        camera=next((str(tags[t]).strip() for t in _CAMERA_TAGS if str(tags.get(t, "")).strip()), None),
        recorded_at=_creation_time(tags.get("creation_time")),
    )


def _check_codec(stream: VideoStream, *, name: str, codecs: list[str]) -> str:
    context = stream.codec_context
    if context is None:
        raise InputRejectedError(
            name, f"{name} has a video stream in a codec FFmpeg cannot decode (unsupported codec)"
        )
    codec = str(context.name)
    if codecs and codec not in codecs:
        raise InputRejectedError(
            name,
            f"{name} uses the unsupported codec {codec!r}; accepted codecs are {', '.join(codecs)} "
            "(setting ingest_codecs)",
        )
    return codec


def _first_frame_rotation(path: Path) -> int:
    """The rotation the first frame asks for (display matrix), rounded to a multiple of 90 degrees.

    A container of its own, so the caller's stays at the start; errors are left to the decode pass.
    """
    try:
        with av.open(str(path), "r") as container:
            for frame in container.decode(video=0):
                return round(float(frame.rotation) / 90.0) * 90 % 360
    except av.FFmpegError:
        pass
    return 0


def _creation_time(value: object) -> datetime | None:
    """A container's ``creation_time`` tag as an aware UTC datetime; None when absent or unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.year < 1971:
        return None  # Cameras without a clock write the epoch, which says nothing.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def ffmpeg_message(exc: av.FFmpegError) -> str:
    """FFmpeg's own words for an error."""
    return str(getattr(exc, "strerror", None) or exc)
