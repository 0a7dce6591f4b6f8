"""Per-clip detections kept in the store, so a clip's frames go through a model once for every stage.

``clips/{clip_id}/detections/{model_id}.npz`` holds one model's detections of a clip's sampled frames,
down to the score the writer asked for (``min_score``). Triggers write them; autolabel (or anything else
that needs the same model on the same frames at a score at or above ``min_score``) reads them back with
:func:`load_detections` instead of running the model again. :func:`detect_clips` runs a detector over
many clips in shared batches, reading the cache first and filling it after.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import StorageError
from dataengine.storage import ObjectStore
from dataengine.vision.inference import Detections, FrameDetector

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClipBatchItem:
    """One clip's sampled frames for :func:`detect_clips`: their clip frame indices and RGB pixels."""

    clip_id: str
    indices: Sequence[int]
    frames: Sequence[NDArray[np.uint8]]


def detections_key(clip_id: str, model_id: str) -> str:
    """The store key of one model's detections of one clip."""
    return f"clips/{clip_id}/detections/{model_id}.npz"


def save_detections(
    store: ObjectStore,
    clip_id: str,
    model_id: str,
    *,
    indices: Sequence[int],
    detections: Sequence[Detections],
    min_score: float,
) -> str:
    """Write the detections (one per frame of ``indices``, all scoring >= ``min_score``); returns the URI."""
    if len(indices) != len(detections):
        raise ValueError(f"{len(detections)} detections for {len(indices)} frames of clip {clip_id}")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        indices=np.asarray(indices, dtype=np.int64),
        counts=np.asarray([len(d) for d in detections], dtype=np.int64),
        boxes_xyxy=np.concatenate([d.boxes_xyxy for d in detections]).astype(np.float32).reshape(-1, 4)
        if detections
        else np.zeros((0, 4), np.float32),
        scores=np.concatenate([d.scores for d in detections]).astype(np.float32)
        if detections
        else np.zeros(0, np.float32),
        labels=np.concatenate([d.labels for d in detections]).astype(np.int64)
        if detections
        else np.zeros(0, np.int64),
        min_score=np.float64(min_score),
    )
    key = detections_key(clip_id, model_id)
    store.write_bytes(key, buffer.getvalue())
    return store.uri(key)


def load_detections(
    store: ObjectStore, clip_id: str, model_id: str, *, indices: Sequence[int], min_score: float
) -> list[Detections] | None:
    """The cached detections scoring >= ``min_score``, or None when there are none that can serve.

    A cache entry serves only if it covers exactly ``indices`` and was written at a ``min_score`` no
    higher than the one asked for; an unreadable entry is logged and treated as missing.
    """
    key = detections_key(clip_id, model_id)
    if not store.exists(key):
        return None
    try:
        with np.load(io.BytesIO(store.read_bytes(key)), allow_pickle=False) as data:
            cached = {name: data[name] for name in data.files}
    except (StorageError, OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable cached detections %s: %s", store.uri(key), exc)
        return None
    if cached["indices"].tolist() != [int(i) for i in indices] or float(cached["min_score"]) > min_score:
        return None
    ends = np.cumsum(cached["counts"])
    starts = ends - cached["counts"]
    return [
        Detections(cached["boxes_xyxy"][a:b], cached["scores"][a:b], cached["labels"][a:b]).above(min_score)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def detect_clips(
    store: ObjectStore | None,
    detector: FrameDetector,
    clips: Sequence[ClipBatchItem],
    *,
    batch_size: int = 8,
    min_score: float = 0.05,
) -> dict[str, list[Detections]]:
    """Each clip's detections (score >= ``min_score``): from the cache where it serves, else from one
    batched pass of ``detector`` over the frames of all the other clips together, which are then cached.

    ``store=None`` neither reads nor writes the cache.
    """
    found: dict[str, list[Detections]] = {}
    todo: list[ClipBatchItem] = []
    for clip in clips:
        cached = None
        if store is not None:
            cached = load_detections(
                store, clip.clip_id, detector.model_id, indices=clip.indices, min_score=min_score
            )
        if cached is None:
            todo.append(clip)
        else:
            found[clip.clip_id] = cached
    frames = [frame for clip in todo for frame in clip.frames]
    predicted = detector.predict(frames, batch_size=batch_size, score_threshold=min_score) if frames else []
    start = 0
    for clip in todo:
        found[clip.clip_id] = predicted[start : start + len(clip.frames)]
        start += len(clip.frames)
        if store is not None:
            save_detections(
                store,
                clip.clip_id,
                detector.model_id,
                indices=clip.indices,
                detections=found[clip.clip_id],
                min_score=min_score,
            )
    return found
