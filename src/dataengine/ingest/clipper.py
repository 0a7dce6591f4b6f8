"""Cutting a decoded video into clips: re-encoded ``clip.mp4``, sampled JPEG frames, ``meta.json`` last.

A clip's ``meta.json`` is written only after its video and frames, so its presence marks the clip
complete; a clip without it is redone from scratch on the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream

from dataengine.clips import ClipMeta, clip_id_for, encode_jpeg, frame_key, meta_key, video_key, write_meta
from dataengine.ingest.decode import DecodedFrame
from dataengine.storage import ObjectStore

ENCODING = "reencode"
_X264_OPTIONS = {"crf": "20", "preset": "veryfast", "bf": "0"}


def sample_step(*, fps: float, sample_fps: float) -> int:
    """The sampling step: ``round(fps / sample_fps)``, at least 1; 1 (all frames) when ``sample_fps`` is 0."""
    if sample_fps <= 0:
        return 1
    return max(1, round(fps / sample_fps))


def clip_length(*, fps: float, clip_seconds: float) -> int:
    """Number of source frames in a full clip: ``round(clip_seconds * fps)``, at least 1."""
    return max(1, round(clip_seconds * fps))


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What every clip of one video shares; ``start_time`` is the time of the video's first frame."""

    video_id: str
    source_uri: str
    fps: float
    width: int
    height: int
    camera: str | None
    recorded_at: datetime | None
    start_time: float = 0.0


@dataclass
class ClipWriter:
    """Writes one clip: frames go to the encoder and, when sampled, to JPEG; :meth:`finish` ends it."""

    store: ObjectStore
    video: VideoFacts
    start_frame: int
    step: int
    jpeg_quality: int
    workdir: Path
    frame_times: list[float] = field(default_factory=list)
    sampled: list[int] = field(default_factory=list)
    _container: OutputContainer | None = None
    _stream: VideoStream | None = None

    @property
    def clip_id(self) -> str:
        return clip_id_for(self.video.video_id, self.start_frame)

    @property
    def _local_video(self) -> Path:
        return self.workdir / f"{self.clip_id}.mp4"

    def add(self, decoded: DecodedFrame) -> None:
        """Append the next frame of the clip."""
        index = decoded.index - self.start_frame
        if index % self.step == 0:
            rgb = np.asarray(decoded.frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            self.store.write_bytes(
                frame_key(self.clip_id, index), encode_jpeg(rgb, quality=self.jpeg_quality)
            )
            self.sampled.append(index)
        self._encode(decoded.frame, pts=index)
        self.frame_times.append(decoded.time)

    def _encode(self, frame: av.VideoFrame, *, pts: int) -> None:
        if self._container is None:
            self._container, self._stream = self._open_encoder()
        assert self._stream is not None
        # The encoder needs yuv420p with even sides; most sources already are, and then this is a copy.
        out = frame.reformat(width=self._stream.width, height=self._stream.height, format="yuv420p")
        out.pts = pts
        for packet in self._stream.encode(out):
            self._container.mux(packet)

    def _open_encoder(self) -> tuple[OutputContainer, VideoStream]:
        container = av.open(str(self._local_video), "w", format="mp4")
        stream = container.add_stream("libx264", rate=Fraction(self.video.fps).limit_denominator(1001))
        stream.width = self.video.width - self.video.width % 2
        stream.height = self.video.height - self.video.height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = dict(_X264_OPTIONS)
        return container, stream

    def finish(self) -> ClipMeta:
        """Flush the encoder, upload ``clip.mp4``, then write ``meta.json``; returns the meta."""
        assert self._container is not None, "finish() on an empty clip"
        assert self._stream is not None
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        self.store.put_file(self._local_video, video_key(self.clip_id))
        self._local_video.unlink(missing_ok=True)
        meta = self._meta()
        write_meta(self.store, meta)
        return meta

    def abort(self) -> None:
        """Drop the half-written clip video; frames already written are overwritten by the next run."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._local_video.unlink(missing_ok=True)

    def _meta(self) -> ClipMeta:
        facts = self.video
        recorded_at = None
        if facts.recorded_at is not None:
            clip_start = facts.recorded_at + timedelta(seconds=self.frame_times[0] - facts.start_time)
            recorded_at = clip_start.isoformat().replace("+00:00", "Z")
        return ClipMeta(
            clip_id=self.clip_id,
            video_id=facts.video_id,
            source_uri=facts.source_uri,
            start_frame=self.start_frame,
            end_frame=self.start_frame + len(self.frame_times),
            start_time=self.frame_times[0],
            end_time=self.frame_times[-1] + 1.0 / facts.fps,
            fps=facts.fps,
            width=facts.width,
            height=facts.height,
            sampled=list(self.sampled),
            camera=facts.camera,
            recorded_at=recorded_at,
            encoding=ENCODING,
            frame_times=list(self.frame_times),
            extra={"codec": "h264", "sample_step": self.step},
        )


def clip_is_written(store: ObjectStore, clip_id: str) -> bool:
    """Whether the clip's ``meta.json`` exists, i.e. its files are complete."""
    return store.exists(meta_key(clip_id))
