"""Label from scratch: the empty pre-labels a clip goes to review with when no model labelled it.

They are version 0 with ``source: none``: every sampled frame, no boxes. They are not a label and are never
stored under ``annotations/``; they are rebuilt from the clip's ``meta.json`` whenever the export or the
import needs them, so a reviewer's boxes are checked against the same frames either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataengine.clips import frame_name, read_meta
from dataengine.formats import NO_LABELS, ClipAnnotations, Frame
from dataengine.storage import ObjectStore

#: The version number of empty pre-labels.
EMPTY_VERSION = 0


def empty_labels(store: ObjectStore, clip_id: str, *, classes: Sequence[str]) -> ClipAnnotations:
    """Version 0 of ``clip_id``: each sampled frame at its stored size, with no boxes."""
    meta = read_meta(store, clip_id)
    frames = [Frame(index, frame_name(index), meta.width, meta.height, []) for index in meta.sampled]
    return ClipAnnotations(
        clip_id=clip_id,
        version=EMPTY_VERSION,
        parent_version=None,
        source=NO_LABELS,
        producer={"models": [], "note": "no pre-labels: label from scratch"},
        classes=list(classes),
        frames=frames,
    )
