"""The clip folder contract (ARCHITECTURE §3): ids, keys, ``meta.json`` and reading sampled frames.

``clips/{clip_id}/clip.mp4``, ``clips/{clip_id}/frames/{index:06d}.jpg`` and ``clips/{clip_id}/meta.json``,
where ``index`` is the frame number within the clip (0 is the clip's first source frame).
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dataengine.errors import FormatError, InputRejectedError, StorageError
from dataengine.storage import ObjectStore

META_SCHEMA = "dataengine.clip-meta/1"
CLIP_ID_PATTERN = re.compile(r"^[0-9a-f]{16}-[0-9]{7}$")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".ts")


def video_id_for(sha256: str) -> str:
    """A video's id: the first 16 hex digits of its sha256."""
    return sha256[:16]


def clip_id_for(video_id: str, start_frame: int) -> str:
    """A clip's id: ``{video_id}-{start_frame:07d}``."""
    return f"{video_id}-{start_frame:07d}"


def clip_prefix(clip_id: str) -> str:
    """The folder key of a clip."""
    return f"clips/{clip_id}"


def video_key(clip_id: str) -> str:
    """The key of the clip's video."""
    return f"clips/{clip_id}/clip.mp4"


def meta_key(clip_id: str) -> str:
    """The key of the clip's ``meta.json``."""
    return f"clips/{clip_id}/meta.json"


def frame_name(index: int) -> str:
    """The frame image's path relative to the clip folder, as annotation files record it."""
    return f"frames/{index:06d}.jpg"


def frame_key(clip_id: str, index: int) -> str:
    """The key of a sampled frame."""
    return f"clips/{clip_id}/{frame_name(index)}"


@dataclass(slots=True)
class ClipMeta:
    """The content of ``meta.json``. ``end_frame`` is exclusive; times are seconds in the source video."""

    clip_id: str
    video_id: str
    source_uri: str
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    fps: float
    width: int
    height: int
    sampled: list[int]
    camera: str | None = None
    recorded_at: str | None = None
    encoding: str = "reencode"
    #: Timestamp in seconds (source timeline) of every clip frame 0..n_frames-1.
    frame_times: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of source frames the clip covers."""
        return self.end_frame - self.start_frame

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with the schema tag."""
        return {"schema": META_SCHEMA, **asdict(self), "n_frames": self.n_frames}

    @classmethod
    def from_dict(cls, doc: Any, *, source_name: str = "meta.json") -> ClipMeta:
        """Parse ``meta.json``; a missing field or another schema is a :class:`FormatError`."""
        if not isinstance(doc, dict) or doc.get("schema") != META_SCHEMA:
            raise FormatError(f"{source_name}: not a {META_SCHEMA} document")
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in doc and f.name not in _OPTIONAL_META]
        if missing:
            raise FormatError(f"{source_name}: missing fields {missing}")
        return cls(**{k: v for k, v in doc.items() if k in names})


_OPTIONAL_META = {"camera", "recorded_at", "encoding", "frame_times", "extra"}


def write_meta(store: ObjectStore, meta: ClipMeta) -> None:
    """Write a clip's ``meta.json`` atomically."""
    store.write_json(meta_key(meta.clip_id), meta.to_dict())


def read_meta(store: ObjectStore, clip_id: str) -> ClipMeta:
    """Read and check a clip's ``meta.json``."""
    key = meta_key(clip_id)
    return ClipMeta.from_dict(store.read_json(key), source_name=store.uri(key))


def decode_jpeg(data: bytes, *, source_name: str) -> NDArray[np.uint8]:
    """An RGB ``uint8`` array of shape (height, width, 3) from JPEG bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{source_name}: not a readable image: {exc}") from exc


def dct_factor(width: int, height: int, *, min_size: int, max_size: int) -> int:
    """How much a ``width`` x ``height`` JPEG may shrink while decoding for a detector that resizes
    to ``min_size`` on the short side and at most ``max_size`` on the long one (torchvision's rule).

    libjpeg scales while decoding by 1/2, 1/4 or 1/8 (DCT scaling): the largest factor that keeps both
    sides at or above the detector's input size, so the detector still shrinks the image and never
    enlarges it; 1 when none does.
    """
    scale = min(min_size / min(width, height), max_size / max(width, height))
    return next((f for f in (8, 4, 2) if f * scale <= 1.0), 1)


def reduced_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` JPEG decodes to at 1 / ``factor`` (libjpeg rounds up)."""
    return -(-width // factor), -(-height // factor)


def decode_jpeg_at(data: bytes, *, source_name: str, full: tuple[int, int], factor: int) -> NDArray[np.uint8]:
    """RGB ``uint8`` of a ``full``-sized JPEG decoded straight to 1 / ``factor`` of its size.

    An image whose size is not ``full`` is refused (:class:`FormatError`); a format that cannot
    scale while decoding (PNG) is decoded whole and resized to :func:`reduced_size`.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != full:
                raise FormatError(
                    f"{source_name} is {image.size[0]}x{image.size[1]}, but its annotation says "
                    f"{full[0]}x{full[1]}"
                )
            size = reduced_size(*full, factor)
            if factor > 1:
                image.draft("RGB", (max(1, full[0] // factor), max(1, full[1] // factor)))
            rgb = image.convert("RGB")
            if rgb.size != size:
                rgb = rgb.resize(size, Image.Resampling.BILINEAR)
            return np.array(rgb, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{source_name}: not a readable image: {exc}") from exc


def read_frame(store: ObjectStore, clip_id: str, index: int) -> NDArray[np.uint8]:
    """A sampled frame of a clip as RGB ``uint8`` (height, width, 3)."""
    key = frame_key(clip_id, index)
    return decode_jpeg(store.read_bytes(key), source_name=store.uri(key))


def read_sampled_frames(store: ObjectStore, clip_id: str) -> tuple[list[int], list[NDArray[np.uint8]]]:
    """A clip's sampled frame indices and RGB frames.

    An unreadable ``meta.json``, a clip with no sampled frames or an unreadable frame raises
    :class:`InputRejectedError` naming the file, so the caller can quarantine the clip.
    """
    meta_uri = store.uri(meta_key(clip_id))
    try:
        meta = read_meta(store, clip_id)
    except (StorageError, FormatError) as exc:
        raise InputRejectedError(meta_uri, f"meta.json is unreadable: {exc}") from exc
    if not meta.sampled:
        raise InputRejectedError(meta_uri, f"{meta_uri} lists no sampled frames")
    frames = []
    for index in meta.sampled:
        try:
            frames.append(read_frame(store, clip_id, index))
        except (StorageError, FormatError) as exc:
            uri = store.uri(frame_key(clip_id, index))
            raise InputRejectedError(uri, f"frame {index} is unreadable: {exc}") from exc
    return list(meta.sampled), frames


def encode_jpeg(rgb: NDArray[np.uint8], *, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB ``uint8`` frame."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
