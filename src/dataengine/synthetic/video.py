"""Encoding synthetic scenes to H.264 files with their ground truth, and landing them in a store.

Colour conversion and the encoder run single-threaded with fixed options and bit-exact muxing, so a
seed gives the same file bytes (and so the same video id) on every run with the same FFmpeg build.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path, PurePosixPath

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream
from numpy.typing import NDArray

from dataengine.clips import clip_id_for, frame_name, video_id_for
from dataengine.errors import ConfigError, ObjectNotFoundError
from dataengine.formats import ClipAnnotations, Frame, validate_document
from dataengine.storage import ObjectStore
from dataengine.synthetic.scene import SyntheticScene, random_events

RENDERER = "dataengine.synthetic"
GROUND_TRUTH_SUFFIX = ".gt.json"
# x264's lookahead (rc-lookahead, mbtree, sync-lookahead) made the bytes depend on timing under load,
# even with one thread; without it 280 of 280 stressed encodes were identical.
_X264_OPTIONS = {
    "crf": "20",
    "preset": "veryfast",
    "threads": "1",
    "bf": "0",
    "x264-params": "rc-lookahead=0:mbtree=0:sync-lookahead=0",
}
_HASH_CHUNK_BYTES = 1 << 20


@contextmanager
def h264_writer(
    path: Path, *, fps: float, width: int, height: int
) -> Iterator[tuple[OutputContainer, VideoStream]]:
    """An MP4 container at ``path`` with one deterministic H.264 (yuv420p) stream; flushed on exit."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = dict(_X264_OPTIONS)
        yield container, stream
        for packet in stream.encode(None):
            container.mux(packet)


def encode_rgb(container: OutputContainer, stream: VideoStream, rgb: NDArray[np.uint8], *, pts: int) -> None:
    """Encode one RGB ``uint8`` frame with presentation time ``pts`` (in frames)."""
    # Single-threaded colour conversion: threaded swscale gave other bytes now and then under load.
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", threads=1)
    frame.pts = pts
    for packet in stream.encode(frame):
        container.mux(packet)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def render_video(path: Path, *, scene: SyntheticScene) -> ClipAnnotations:
    """Write ``scene`` as an H.264 MP4 at ``path``; returns the ground truth of the whole video.

    The ground truth is one clip starting at frame 0 of the video, ``{video_id}-0000000``, with one
    frame per source frame (``index`` = source frame number) and ``source="synthetic"``.
    """
    if scene.n_frames < 1:
        raise ConfigError(f"cannot render {path}: a video needs at least one frame, the scene has none")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames: list[Frame] = []
    with h264_writer(path, fps=scene.fps, width=scene.width, height=scene.height) as (container, stream):
        for index, rgb, boxes in scene.frames():
            encode_rgb(container, stream, rgb, pts=index)
            frames.append(
                Frame(
                    index=index, image=frame_name(index), width=scene.width, height=scene.height, boxes=boxes
                )
            )
    video_id = video_id_for(file_sha256(path))
    truth = ClipAnnotations(
        clip_id=clip_id_for(video_id, 0),
        version=1,
        source="synthetic",
        classes=list(scene.classes),
        frames=frames,
        producer={
            "renderer": RENDERER,
            "seed": scene.seed,
            "events": [event.to_dict() for event in scene.events],
        },
    )
    validate_document(truth.to_dict(), source_name=str(path))
    return truth


def ground_truth_key(video_key: str) -> str:
    """The key of a video's ground-truth sidecar: the video key with its suffix replaced by ``.gt.json``."""
    return PurePosixPath(video_key).with_suffix(GROUND_TRUTH_SUFFIX).as_posix()


@dataclass(frozen=True, slots=True)
class _Slot:
    camera: str
    recorded_at: datetime

    def key(self, prefix: str) -> str:
        return f"{prefix}/{self.camera}/{self.recorded_at:%Y-%m-%d}/{self.recorded_at:%H%M%S}.mp4"


def _landing_slots(*, n_videos: int, seed: int, start_day: date) -> list[_Slot]:
    """Cameras in turn; each camera records at most eight videos a day, one per hour from 08:00."""
    rng = np.random.default_rng([seed, 100])
    n_cameras = max(1, min(3, n_videos))
    slots = []
    for i in range(n_videos):
        turn = i // n_cameras
        day = start_day + timedelta(days=turn // 8)
        at = datetime(day.year, day.month, day.day, 8 + turn % 8, tzinfo=UTC)
        at += timedelta(minutes=int(rng.integers(60)), seconds=int(rng.integers(60)))
        slots.append(_Slot(camera=f"cam{i % n_cameras + 1:02d}", recorded_at=at))
    return slots


def _scene_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, 101, i]).generate_state(1)[0] & 0x7FFFFFFF)


def write_landing(
    store: ObjectStore,
    *,
    n_videos: int,
    seed: int,
    prefix: str = "landing",
    seconds: float = 10.0,
    fps: float = 10.0,
    width: int = 320,
    height: int = 240,
    with_events: bool = True,
    start_day: str = "2026-11-22",
) -> list[str]:
    """Render ``n_videos`` synthetic videos into ``{prefix}/{camera}/{date}/{HHMMSS}.mp4``.

    Each video's ground truth is written first, beside it (see :func:`ground_truth_key`), with
    ``created_at`` set to the recording time so the same seed writes the same bytes. Returns the
    video keys in rendering order.
    """
    try:
        first_day = date.fromisoformat(start_day)
    except ValueError as exc:
        raise ConfigError(f"start_day {start_day!r} is not a YYYY-MM-DD date") from exc
    n_frames = max(1, round(seconds * fps))
    keys = []
    with tempfile.TemporaryDirectory(prefix="dataengine-synthetic-") as tmp:
        for i, slot in enumerate(_landing_slots(n_videos=n_videos, seed=seed, start_day=first_day)):
            scene_seed = _scene_seed(seed, i)
            events = random_events(seed=scene_seed, n_frames=n_frames) if with_events else []
            scene = SyntheticScene(
                seed=scene_seed, width=width, height=height, fps=fps, n_frames=n_frames, events=events
            )
            local = Path(tmp) / f"video-{i}.mp4"
            truth = render_video(local, scene=scene)
            truth.created_at = slot.recorded_at.isoformat().replace("+00:00", "Z")
            key = slot.key(prefix.strip("/"))
            store.write_bytes(ground_truth_key(key), truth.to_json_bytes())
            store.put_file(local, key)
            keys.append(key)
    return keys


def load_ground_truth(store: ObjectStore, video_uri: str) -> ClipAnnotations:
    """The ground truth of the synthetic video at ``video_uri`` (a URI in ``store`` or a ``file://`` path).

    Raises :class:`ObjectNotFoundError` naming the expected sidecar when there is none.
    """
    if video_uri.startswith(store.url + "/") or "://" not in video_uri:
        key = ground_truth_key(store.key_of(video_uri) if "://" in video_uri else video_uri)
        try:
            data = store.read_bytes(key)
        except ObjectNotFoundError as exc:
            raise ObjectNotFoundError(
                f"no ground truth for {video_uri}: expected the sidecar {store.uri(key)}"
            ) from exc
        return ClipAnnotations.from_json_bytes(data, source_name=store.uri(key))
    if not video_uri.startswith("file://"):
        raise ObjectNotFoundError(
            f"no ground truth for {video_uri}: it is neither inside the store {store.url} nor a file:// path"
        )
    sidecar = Path(ground_truth_key(video_uri.removeprefix("file://")))
    if not sidecar.is_file():
        raise ObjectNotFoundError(f"no ground truth for {video_uri}: expected the sidecar {sidecar}")
    return ClipAnnotations.from_json_bytes(sidecar.read_bytes(), source_name=str(sidecar))
