"""Decoding a video stream one frame at a time, numbering frames by the index and noting damage.

A packet the decoder refuses, or a frame it marks corrupt, does not stop decoding: the frame numbers
that came out damaged or not at all are reported, so that the clips around them can still be kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream
from numpy.typing import NDArray

from dataengine.ingest.index import FrameIndex
from dataengine.ingest.probe import ffmpeg_message


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded frame, its number in the video (from 0), and whether the decoder marked it corrupt.

    ``frame`` is None for a frame whose pixels nothing uses, passed on without them (ingest/ahead.py).
    """

    number: int
    frame: av.VideoFrame | None
    corrupt: bool


@dataclass
class DecodeLog:
    """What went wrong while decoding: FFmpeg's messages, with the packet count when they happened."""

    errors: list[str] = field(default_factory=list)
    frames: int = 0

    def add(self, message: str) -> None:
        if len(self.errors) < 20:  # Enough to say what happened; a broken file can fail on every packet.
            self.errors.append(message)


def decode_frames(
    container: InputContainer,
    stream: VideoStream,
    index: FrameIndex,
    log: DecodeLog,
    skip: NDArray[np.bool_] | None = None,
) -> Iterator[DecodedFrame]:
    """The stream's frames in presentation order with their frame numbers; never raises on bad data.

    The packets of frames marked in ``skip`` are not given to the decoder (ingest/skipping.py).
    """
    last = -1
    for frame in _frames(container, stream, log, _skipped(index, skip)):
        number = index.number(frame.pts)
        if number is None or number <= last:
            number = last + 1  # No usable timestamp: the next frame in presentation order.
        if number >= index.n_frames:
            log.add(f"a frame after the last indexed one (pts {frame.pts}) was ignored")
            continue
        last = number
        log.frames += 1
        yield DecodedFrame(number=number, frame=frame, corrupt=bool(frame.is_corrupt))


_PacketTest = Callable[["av.Packet[VideoStream]"], bool]


def _skipped(index: FrameIndex, skip: NDArray[np.bool_] | None) -> _PacketTest:
    if skip is None:
        return lambda _packet: False

    def skipped(packet: av.Packet[VideoStream]) -> bool:
        number = index.number(packet.pts)
        return number is not None and bool(skip[number])

    return skipped


def _frames(
    container: InputContainer,
    stream: VideoStream,
    log: DecodeLog,
    skipped: Callable[[av.Packet[VideoStream]], bool],
) -> Iterator[av.VideoFrame]:
    codec = stream.codec_context
    packets, flushed = 0, False
    demuxed = container.demux(stream)
    while not flushed:
        try:
            packet = next(demuxed)
        except StopIteration:
            packet = None
        except av.FFmpegError as exc:
            log.add(f"reading stopped after {packets} packets: {ffmpeg_message(exc)}")
            packet = None
        if packet is None or packet.size == 0:
            flushed = True
        packets += 1
        if packet is not None and not flushed and skipped(packet):
            continue
        try:
            # An empty packet at the end flushes the decoder.
            frames = codec.decode(None if flushed else packet)
        except av.FFmpegError as exc:
            where = "the end" if packet is None else f"packet {packets} (pts {packet.pts})"
            log.add(f"{where} does not decode: {ffmpeg_message(exc)}")
            continue
        yield from frames
