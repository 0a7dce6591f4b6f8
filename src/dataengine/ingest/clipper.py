"""Writing one clip: ``clip.mp4`` (stream copy or re-encode), sampled JPEG frames, ``meta.json`` last.

A clip's ``meta.json`` is written only after its video and every sampled frame, and a clip counts as
done only when ``meta.json`` and every object it names exist (:func:`complete_meta`): a clip killed
half-way, or whose frames were deleted later, is cleared and redone from scratch by the next run.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream
from numpy.typing import NDArray

from dataengine.clips import (
    ClipMeta,
    clip_id_for,
    clip_prefix,
    frame_key,
    meta_key,
    video_key,
    write_meta,
)
from dataengine.errors import FormatError, StorageError
from dataengine.ingest.frames import JpegWriter, scaled_size, thumbnail
from dataengine.ingest.index import FrameIndex
from dataengine.ingest.plan import COPY
from dataengine.storage import ObjectStore

_X264_OPTIONS = {"crf": "20", "preset": "veryfast"}
# Re-encoded clips keep each frame's own time (variable frame rate) at this resolution.
_ENCODE_TIME_BASE = Fraction(1, 90000)


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What every clip of one video shares. ``width``/``height`` are the displayed (upright) size."""

    video_id: str
    source_uri: str
    path: Path
    fps: float
    width: int
    height: int
    codec: str
    rotation: int
    camera: str | None
    recorded_at: datetime | None


@dataclass(frozen=True, slots=True)
class Sampling:
    """How frames become JPEGs: ``sample_fps`` (0 = every frame), quality and an optional size cap."""

    sample_fps: float
    jpeg_quality: int
    max_side: int | None


class Sampler:
    """Which frames of a clip starting at ``start_frame`` become JPEGs, asked frame by frame in order."""

    def __init__(self, index: FrameIndex, *, start_frame: int, sample_fps: float) -> None:
        self.times, self.start, self.rate = index.times, start_frame, sample_fps
        # Half a frame early counts, so that 12.5 frames per sample alternate 12 and 13 like ffmpeg's fps.
        self._early = 0.5 / index.fps + 1e-9
        self._next_due = 0.0

    def take(self, number: int) -> bool:
        """Whether frame ``number`` is kept: the first at or after each multiple of ``1 / sample_fps``."""
        if self.rate <= 0:
            return True
        elapsed = float(self.times[number] - self.times[self.start]) + self._early
        if elapsed < self._next_due:
            return False
        self._next_due = (math.floor(elapsed * self.rate) + 1) / self.rate
        return True


class ClipWriter:
    """Collects one clip's frames (in order, from ``start_frame``); :meth:`finish` writes it."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        facts: VideoFacts,
        index: FrameIndex,
        start_frame: int,
        encoding: str,
        sampling: Sampling,
        jpegs: JpegWriter,
        workdir: Path,
        keep_thumbnails: bool,
    ) -> None:
        self.store, self.facts, self.index, self.start_frame = store, facts, index, start_frame
        self.encoding, self.sampling, self.jpegs, self.workdir = encoding, sampling, jpegs, workdir
        self.keep_thumbnails = keep_thumbnails
        self.next_frame = start_frame
        self.sampled: list[int] = []
        self.thumbnails: list[NDArray[np.float32]] = []
        self._pending: list[Future[None]] = []
        self._sampler = Sampler(index, start_frame=start_frame, sample_fps=sampling.sample_fps)
        self._container: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._finished = False

    @property
    def clip_id(self) -> str:
        return clip_id_for(self.facts.video_id, self.start_frame)

    @property
    def _local_video(self) -> Path:
        return self.workdir / f"{self.clip_id}.mp4"

    def add(self, number: int, frame: av.VideoFrame | None) -> None:
        """Append frame ``number`` of the video (the next one of the clip).

        ``frame`` may be None only for a frame whose pixels are not used: not sampled, in a copied clip.
        """
        position = number - self.start_frame
        sampled = self._sampler.take(number)
        if frame is None:
            if sampled or self.encoding != COPY:
                raise RuntimeError(f"frame {number} of {self.facts.source_uri} came without its pixels")
            self.next_frame = number + 1
            return
        if sampled and self.keep_thumbnails:
            self.thumbnails.append(thumbnail(frame))
        if self.encoding != COPY:
            self._encode(frame, time=float(self.index.times[number] - self.index.times[self.start_frame]))
        if sampled:
            # Handed over last: PyAV deadlocks when two threads convert the same frame at once.
            key = frame_key(self.clip_id, position)
            self._pending.append(self.jpegs.submit(key, frame, rotation=self.facts.rotation))
            self.sampled.append(position)
        self.next_frame = number + 1

    def _encode(self, frame: av.VideoFrame, *, time: float) -> None:
        if self._container is None:
            self._container, self._stream = self._open_encoder(frame)
        assert self._stream is not None
        # The encoder needs yuv420p with even sides; most sources already are, and then this is a copy.
        out = frame.reformat(width=self._stream.width, height=self._stream.height, format="yuv420p")
        out.pts = round(time / _ENCODE_TIME_BASE)
        out.time_base = _ENCODE_TIME_BASE
        for packet in self._stream.encode(out):
            self._container.mux(packet)

    def _open_encoder(self, frame: av.VideoFrame) -> tuple[OutputContainer, VideoStream]:
        container = av.open(str(self._local_video), "w", format="mp4")
        stream = container.add_stream("libx264", rate=Fraction(self.facts.fps).limit_denominator(1001))
        stream.width = frame.width - frame.width % 2
        stream.height = frame.height - frame.height % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = _ENCODE_TIME_BASE
        stream.time_base = _ENCODE_TIME_BASE
        stream.options = dict(_X264_OPTIONS)
        if self.facts.rotation:
            stream.set_display_rotation(self.facts.rotation)
        return container, stream

    def wait_frames(self) -> None:
        """Wait until every sampled frame is written; a failed write raises here."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def finish(self, *, details: dict[str, Any]) -> ClipMeta:
        """Write ``clip.mp4`` (copied or encoded), wait for the frames, then ``meta.json``."""
        end_frame = self.next_frame
        if self.encoding == COPY:
            remux(
                self.facts.path,
                start_pts=int(self.index.pts[self.start_frame]),
                end_pts=int(self.index.pts[end_frame]) if end_frame < self.index.n_frames else None,
                out_path=self._local_video,
            )
        else:
            self._flush_encoder()
        self.wait_frames()
        self.store.put_file(self._local_video, video_key(self.clip_id))
        self._local_video.unlink(missing_ok=True)
        meta = self._meta(end_frame, details)
        write_meta(self.store, meta)
        self._finished = True
        return meta

    def _flush_encoder(self) -> None:
        assert self._container is not None, "finish() on an empty clip"
        assert self._stream is not None
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def discard(self) -> None:
        """Drop an unfinished clip: stop the encoder and remove every object written so far.

        A finished clip (``meta.json`` written) is complete and stays: a rerun registers it.
        """
        if self._container is not None:
            self._container.close()
            self._container = None
        self._local_video.unlink(missing_ok=True)
        for future in self._pending:
            future.exception()  # Wait: a frame still being written would reappear after the delete.
        self._pending = []
        if self._finished:
            return
        clear_clip(self.store, self.clip_id, frames=self.sampled)

    def _meta(self, end_frame: int, details: dict[str, Any]) -> ClipMeta:
        facts, times = self.facts, self.index.times
        start_time = float(times[self.start_frame])
        recorded_at = None
        if facts.recorded_at is not None:
            clip_start = facts.recorded_at + timedelta(seconds=start_time)
            recorded_at = clip_start.isoformat().replace("+00:00", "Z")
        frame_width, frame_height = scaled_size(facts.width, facts.height, self.sampling.max_side)
        return ClipMeta(
            clip_id=self.clip_id,
            video_id=facts.video_id,
            source_uri=facts.source_uri,
            start_frame=self.start_frame,
            end_frame=end_frame,
            start_time=start_time,
            end_time=self.index.end_time(end_frame - 1),
            fps=facts.fps,
            width=facts.width,
            height=facts.height,
            sampled=list(self.sampled),
            camera=facts.camera,
            recorded_at=recorded_at,
            encoding=self.encoding,
            frame_times=[round(float(t), 6) for t in times[self.start_frame : end_frame]],
            extra={
                "codec": facts.codec,
                "sample_fps": self.sampling.sample_fps,
                "rotation": facts.rotation,
                "source_time_offset": round(self.index.time_offset, 6),
                "frame_width": frame_width,
                "frame_height": frame_height,
                **details,
            },
        )


def remux(path: Path, *, start_pts: int, end_pts: int | None, out_path: Path) -> int:
    """Copy the packets from the keyframe at ``start_pts`` up to the one at ``end_pts`` into an MP4.

    Both are clean keyframes, so the packets between them in decode order are exactly the clip's
    frames. Timestamps are shifted so that the clip starts at 0. Returns the number of packets.
    """
    with av.open(str(path), "r") as source:
        stream = source.streams.video[0]
        source.seek(start_pts, stream=stream, backward=True, any_frame=False)
        with av.open(str(out_path), "w", format="mp4") as target:
            out = target.add_stream_from_template(stream)
            copied = 0
            for packet in source.demux(stream):
                if packet.size == 0:
                    continue
                if copied == 0 and packet.pts != start_pts:
                    continue  # Before the clip's keyframe: the seek lands at or before it.
                if end_pts is not None and packet.pts == end_pts:
                    break
                packet.pts = None if packet.pts is None else packet.pts - start_pts
                packet.dts = None if packet.dts is None else packet.dts - start_pts
                packet.stream = out
                target.mux(packet)
                copied += 1
    if copied == 0:
        raise RuntimeError(f"{path}: no packet at pts {start_pts} after seeking to it")
    return copied


def complete_meta(store: ObjectStore, clip_id: str) -> ClipMeta | None:
    """The clip's ``meta.json`` when the clip is complete: ``meta.json`` readable, ``clip.mp4`` and
    every sampled frame it lists present (one listing of the clip's folder). None otherwise."""
    keys = set(store.list(clip_prefix(clip_id)))
    if meta_key(clip_id) not in keys:
        return None
    try:
        meta = ClipMeta.from_dict(store.read_json(meta_key(clip_id)), source_name=meta_key(clip_id))
    except (StorageError, FormatError):
        return None  # Unreadable (e.g. cut short by hand): redone like a missing one.
    wanted = {video_key(clip_id), *(frame_key(clip_id, i) for i in meta.sampled)}
    return meta if wanted <= keys else None


def clear_clip(store: ObjectStore, clip_id: str, *, frames: list[int] | None = None) -> None:
    """Remove an incomplete clip's objects: ``meta.json`` first (the clip stops counting as written),
    then ``clip.mp4``, the frames (``frames``, or every file in ``frames/``) and temporary files of
    writes that were killed. Other files of the clip (cached detections) stay."""
    store.delete(meta_key(clip_id))
    store.delete(video_key(clip_id))
    if frames is None:
        keys = store.list(f"{clip_prefix(clip_id)}/frames")
    else:
        keys = [frame_key(clip_id, i) for i in frames]
    for key in keys:
        store.delete(key)
    store.remove_temporaries(clip_prefix(clip_id))
