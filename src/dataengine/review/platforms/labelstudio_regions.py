"""Our labels as Label Studio ``VideoRectangle`` regions and back (see :mod:`.labelstudio`).

Clip frame ``i`` is Label Studio frame ``i + 1`` at time ``i / fps``; boxes are percent of the frame.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from dataengine.errors import AnnotationValidationError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.review.base import reviewed_version

FROM_NAME, TO_NAME = "box", "video"
#: Two coordinates closer than this (pixels) are the same: percent round trips.
PIXEL_TOLERANCE = 1e-3
_TRACK_ID = re.compile(r"^dt(?P<track>\d+)$")


def label_config(classes: Sequence[str]) -> str:
    """The project's labelling config: our classes on a video with per-task frame rate."""
    labels = "".join(f"<Label value={quoteattr(name)}/>" for name in classes)
    return (
        '<View><Header value="Clip $clip_id (version $exported_version)"/>'
        f'<Labels name="videoLabels" toName="{TO_NAME}" allowEmpty="true">{labels}</Labels>'
        f'<Video name="{TO_NAME}" value="$video" framerate="$fps"/>'
        f'<VideoRectangle name="{FROM_NAME}" toName="{TO_NAME}"/></View>'
    )


def prediction_result(annotations: ClipAnnotations, *, fps: float, n_frames: int) -> list[dict[str, Any]]:
    """Our tracks as ``videorectangle`` regions: a keyframe per exported frame the track is on."""
    frames = sorted(annotations.frames, key=lambda f: f.index)
    tracks: dict[tuple[str, int | str], dict[int, tuple[Frame, Box]]] = {}
    for frame in frames:
        for j, box in enumerate(frame.boxes):
            key: int | str = box.track if box.track is not None else f"f{frame.index}b{j}"
            tracks.setdefault((box.label, key), {})[frame.index] = (frame, box)
    following = {frame.index: nxt.index for frame, nxt in itertools.pairwise(frames)}
    result = []
    for (label, track), boxes in tracks.items():
        sequence = []
        for index, (frame, box) in sorted(boxes.items()):
            x1, y1, x2, y2 = box.xyxy
            sequence.append(
                {
                    "frame": index + 1,
                    "enabled": following.get(index) in boxes,
                    "rotation": 0,
                    "x": 100 * x1 / frame.width,
                    "y": 100 * y1 / frame.height,
                    "width": 100 * (x2 - x1) / frame.width,
                    "height": 100 * (y2 - y1) / frame.height,
                    "time": index / fps,
                }
            )
        region = f"dt{track}" if isinstance(track, int) else f"u{track}"
        result.append(
            {
                "id": region,
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": "videorectangle",
                "origin": "prediction",
                "value": {
                    "framesCount": n_frames,
                    "duration": n_frames / fps,
                    "sequence": sequence,
                    "labels": [label],
                },
            }
        )
    return result


def result_to_annotations(result: Any, *, exported: ClipAnnotations, source_name: str) -> ClipAnnotations:
    """An annotation's ``result`` as reviewed labels on the exported frames, checked against them."""
    if not isinstance(result, list):
        raise AnnotationValidationError(source_name, "$.result", "expected a list of regions")
    frames = {f.index: Frame(f.index, f.image, f.width, f.height, []) for f in exported.frames}
    originals = {f.index: f.boxes for f in exported.frames}
    next_track = 1 + max((b.track or 0 for f in exported.frames for b in f.boxes), default=0)
    for i, region in enumerate(result):
        where = f"$.result[{i}]"
        if not isinstance(region, dict) or region.get("type") not in ("videorectangle", "labels"):
            continue  # other tags' results (none in our config) carry no boxes
        value = region.get("value")
        sequence = value.get("sequence") if isinstance(value, dict) else None
        labels = value.get("labels") if isinstance(value, dict) else None
        if not isinstance(sequence, list) or not isinstance(labels, list) or len(labels) != 1:
            raise AnnotationValidationError(
                source_name, f"{where}.value", "a region needs a sequence and one label"
            )
        match = _TRACK_ID.match(str(region.get("id", "")))
        if match:
            track = int(match.group("track"))
        else:
            track, next_track = next_track, next_track + 1
        keyframes = _keyframes(sequence, source_name, f"{where}.value.sequence")
        for index, frame in frames.items():
            percent = box_at(keyframes, index + 1)
            if percent is None:
                continue
            xyxy = _pixels(percent, frame)
            if xyxy[0] >= xyxy[2] or xyxy[1] >= xyxy[3]:
                raise AnnotationValidationError(
                    source_name, f"{where}.value.sequence", f"frame {index + 1}: empty box {percent}"
                )
            label = str(labels[0])
            kept = next((b for b in originals[index] if b.label == label and _same(b.xyxy, xyxy)), None)
            frame.boxes.append(kept or Box(label=label, xyxy=xyxy, track=track, score=None, origin="human"))
    return reviewed_version(exported, frames, source_name=source_name)


Keyframe = tuple[int, bool, tuple[float, float, float, float]]


def _keyframes(sequence: list[Any], source_name: str, where: str) -> list[Keyframe]:
    keyframes = []
    for j, item in enumerate(sequence):
        try:
            frame = int(item["frame"])
            box = (float(item["x"]), float(item["y"]), float(item["width"]), float(item["height"]))
            enabled = bool(item.get("enabled", True))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationValidationError(
                source_name, f"{where}[{j}]", f"a keyframe needs frame, x, y, width, height: {exc!r}"
            ) from exc
        if frame < 1:
            raise AnnotationValidationError(
                source_name, f"{where}[{j}].frame", f"frames count from 1, got {frame}"
            )
        keyframes.append((frame, enabled, box))
    return sorted(keyframes, key=lambda k: k[0])


def box_at(keyframes: list[Keyframe], frame: int) -> tuple[float, float, float, float] | None:
    """The region's box (percent x, y, width, height) on Label Studio frame ``frame``, or ``None``."""
    before = [k for k in keyframes if k[0] <= frame]
    if not before:
        return None
    start = before[-1]
    if start[0] == frame:
        return start[2]
    if not start[1]:
        return None  # the region ends at its last keyframe
    after = [k for k in keyframes if k[0] > frame]
    if not after:
        return start[2]
    end = after[0]
    t = (frame - start[0]) / (end[0] - start[0])
    return tuple(a + t * (b - a) for a, b in zip(start[2], end[2], strict=True))  # type: ignore[return-value]


def _pixels(percent: tuple[float, float, float, float], frame: Frame) -> tuple[float, float, float, float]:
    x, y, w, h = percent
    x1, y1 = x / 100 * frame.width, y / 100 * frame.height
    x2, y2 = x1 + w / 100 * frame.width, y1 + h / 100 * frame.height
    return (
        _clamp(x1, frame.width),
        _clamp(y1, frame.height),
        _clamp(x2, frame.width),
        _clamp(y2, frame.height),
    )


def _clamp(value: float, high: int) -> float:
    return min(max(value, 0.0), float(high))


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(p - q) <= PIXEL_TOLERANCE for p, q in zip(a, b, strict=True))
