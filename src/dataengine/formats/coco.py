"""COCO detection JSON from clip annotations: for tools that want one file (evaluation, viewers).

Training never reads this: each clip's own file is loaded in the Dataset. COCO boxes are ``[x, y, w, h]``
in absolute pixels; category ids start at 1 in the order of ``classes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dataengine.formats.annotations import Box, ClipAnnotations


def coco_categories(classes: Sequence[str]) -> list[dict[str, Any]]:
    """COCO ``categories`` for ``classes``: ids 1..N in order."""
    return [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)]


def xyxy_to_xywh(xyxy: Sequence[float]) -> list[float]:
    """``[x1, y1, x2, y2]`` to COCO's ``[x, y, width, height]``."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def image_id_for(clip_id: str, frame_index: int, ids: dict[tuple[str, int], int]) -> int:
    """A stable small integer id per (clip, frame), assigned in first-seen order."""
    return ids.setdefault((clip_id, frame_index), len(ids) + 1)


def to_coco(
    clips: Iterable[ClipAnnotations],
    *,
    classes: Sequence[str],
    image_prefix: str = "clips",
) -> dict[str, Any]:
    """One COCO ground-truth document for ``clips``; boxes of unknown classes are an error.

    ``file_name`` is ``{image_prefix}/{clip_id}/{frame image}``, the storage key of the frame.
    """
    category = {name: i + 1 for i, name in enumerate(classes)}
    ids: dict[tuple[str, int], int] = {}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for clip in clips:
        for frame in sorted(clip.frames, key=lambda f: f.index):
            image_id = image_id_for(clip.clip_id, frame.index, ids)
            images.append(
                {
                    "id": image_id,
                    "file_name": f"{image_prefix}/{clip.clip_id}/{frame.image}",
                    "width": frame.width,
                    "height": frame.height,
                    "clip_id": clip.clip_id,
                    "frame_index": frame.index,
                }
            )
            for box in frame.boxes:
                annotations.append(_coco_box(box, image_id, len(annotations) + 1, category))
    return {
        "info": {"description": "dataengine export", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(classes),
    }


def _coco_box(box: Box, image_id: int, ann_id: int, category: dict[str, int]) -> dict[str, Any]:
    if box.label not in category:
        raise ValueError(f"box label {box.label!r} is not one of the dataset classes {sorted(category)}")
    bbox = xyxy_to_xywh(box.xyxy)
    entry: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category[box.label],
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": 0,
    }
    if box.track is not None:
        entry["track_id"] = box.track
    if box.score is not None:
        entry["score"] = box.score
    return entry
