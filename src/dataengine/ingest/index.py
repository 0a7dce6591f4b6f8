"""The frame index of a video stream, read from its packets without decoding.

Frame numbers are positions in presentation order (sorted timestamps), so they stay the same whatever
happens while decoding: a frame that fails to decode keeps its number and leaves a hole. The index also
says where a cut leaves both sides decodable on their own (a *clean* keyframe), which is where a clip
can be cut by stream copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.stream import VideoStream
from numpy.typing import NDArray

from dataengine.errors import InputRejectedError
from dataengine.ingest.nal import H264Packets
from dataengine.ingest.probe import ffmpeg_message

# Picture kinds per frame (``FrameIndex.picture``), read from H.264 NAL headers; other codecs are unknown.
UNKNOWN, NON_REFERENCE, REFERENCE, IDR = -1, 0, 1, 2


@dataclass(frozen=True)
class FrameIndex:
    """Per frame, in presentation order: timestamp, time from frame 0, and keyframe flags.

    ``pts`` is in the stream's ``time_base``; ``times`` are seconds from the first frame, and the first
    frame is at ``time_offset`` seconds on the source's own timeline. ``by_arrival`` means the stream
    had no timestamps, so frames are numbered in the order they come out of the decoder.
    """

    pts: NDArray[np.int64]
    times: NDArray[np.float64]
    keyframe: NDArray[np.bool_]
    clean: NDArray[np.bool_]
    time_base: Fraction
    time_offset: float
    fps: float
    by_arrival: bool = False
    read_error: str | None = None
    # Per frame in presentation order: UNKNOWN, NON_REFERENCE, REFERENCE or IDR; and the frame
    # numbers in decode order. None when the stream's packets were not read as H.264.
    picture: NDArray[np.int8] | None = None
    decode_order: NDArray[np.int64] | None = None

    @property
    def n_frames(self) -> int:
        return int(self.pts.shape[0])

    def number(self, pts: int | None) -> int | None:
        """The frame number of a decoded frame's ``pts``; None when the index has no such frame."""
        if pts is None or self.by_arrival:
            return None
        position = int(np.searchsorted(self.pts, pts))
        return position if position < self.n_frames and int(self.pts[position]) == pts else None

    def end_time(self, frame: int) -> float:
        """When frame ``frame`` stops showing: the next frame's time, or one frame period after the last."""
        if frame + 1 < self.n_frames:
            return float(self.times[frame + 1])
        return float(self.times[frame]) + 1.0 / self.fps

    def next_keyframe(self, frame: int) -> int:
        """The first keyframe after ``frame``, or ``n_frames`` when there is none."""
        later = np.flatnonzero(self.keyframe[frame + 1 :])
        return frame + 1 + int(later[0]) if later.size else self.n_frames


def scan(path: Path, *, name: str, fps: float) -> FrameIndex:
    """Read every packet of the first video stream (no decoding) and build the frame index."""
    pts_list: list[int] = []
    key_list: list[bool] = []
    kinds: list[int] = []
    read_error = None
    h264: H264Packets | None = None
    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            time_base = stream.time_base or Fraction(1, 90000)
            if stream.codec_context.name == "h264":
                h264 = H264Packets(stream.codec_context.extradata)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # The demuxer's end-of-stream marker.
                stamp = packet.pts if packet.pts is not None else packet.dts
                pts_list.append(-1 if stamp is None else int(stamp))
                key_list.append(bool(packet.is_keyframe))
                if h264 is not None:
                    kinds.append(_picture_kind(h264, packet))
    except av.FFmpegError as exc:
        # The rest of the file cannot be read: the frames up to here still count.
        read_error = f"reading stopped after {len(pts_list)} packets: {ffmpeg_message(exc)}"
    if not pts_list:
        raise InputRejectedError(name, f"{name} has a video stream with no frames")
    return build_index(
        np.asarray(pts_list, dtype=np.int64),
        np.asarray(key_list, dtype=np.bool_),
        time_base=Fraction(time_base),
        fps=fps,
        read_error=read_error,
        decode_picture=np.asarray(kinds, dtype=np.int8) if h264 is not None else None,
    )


def _picture_kind(h264: H264Packets, packet: av.Packet[VideoStream]) -> int:
    kind = h264.kind(memoryview(packet))
    if kind is None:
        return UNKNOWN
    return IDR if kind.idr else REFERENCE if kind.reference else NON_REFERENCE


def build_index(
    decode_pts: NDArray[np.int64],
    decode_key: NDArray[np.bool_],
    *,
    time_base: Fraction,
    fps: float,
    read_error: str | None = None,
    decode_picture: NDArray[np.int8] | None = None,
) -> FrameIndex:
    """The index from packets in decode order (timestamps, keyframe flags); -1 means no timestamp."""
    n = decode_pts.shape[0]
    by_arrival = bool((decode_pts < 0).any()) or np.unique(decode_pts).shape[0] != n
    if by_arrival:
        # Without usable timestamps, frames are taken to come in presentation order at a constant rate.
        decode_pts = np.arange(n, dtype=np.int64)
        time_base = Fraction(1) / Fraction(fps).limit_denominator(1001)
    order = np.argsort(decode_pts, kind="stable")
    prefix_max = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], decode_pts[:-1]]))
    suffix_min = np.minimum.accumulate(np.concatenate([decode_pts[1:], [np.iinfo(np.int64).max]])[::-1])[::-1]
    # A keyframe is clean when nothing before it in decode order shows after it, and nothing after it
    # shows before it: the packets split there into two sets that each decode alone (a closed GOP).
    clean_decode = decode_key & (prefix_max < decode_pts) & (suffix_min > decode_pts)
    pts = decode_pts[order]
    seconds = (pts - pts[0]).astype(np.float64) * float(time_base)
    return FrameIndex(
        pts=pts,
        times=seconds,
        keyframe=decode_key[order],
        clean=clean_decode[order],
        time_base=time_base,
        time_offset=float(pts[0] * time_base),
        fps=fps,
        by_arrival=by_arrival,
        read_error=read_error,
        picture=None if decode_picture is None or by_arrival else decode_picture[order],
        decode_order=None if decode_picture is None or by_arrival else _inverse(order),
    )


def _inverse(order: NDArray[np.intp]) -> NDArray[np.int64]:
    """``order`` maps frame numbers to decode positions; this maps decode positions to frame numbers."""
    inverse = np.empty(order.shape[0], dtype=np.int64)
    inverse[order] = np.arange(order.shape[0], dtype=np.int64)
    return inverse
