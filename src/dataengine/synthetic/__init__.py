"""Synthetic videos with exact ground truth, for tests, the demo and benchmarks.

A :class:`SyntheticScene` is a seeded room with moving people, beds and (rarely) wheelchairs; events
(occlusion, lighting change, a rare-class object) disturb chosen frame ranges. :func:`render_video`
encodes it to H.264 and returns its ground truth in the clip annotation format; :func:`write_landing`
drops videos plus ``.gt.json`` sidecars into a store's landing area.
"""

from dataengine.synthetic.scene import (
    EVENT_KINDS,
    MIN_VISIBLE_FRACTION,
    RARE_CLASS,
    SyntheticEvent,
    SyntheticScene,
    random_events,
)
from dataengine.synthetic.video import (
    GROUND_TRUTH_SUFFIX,
    RENDERER,
    ground_truth_key,
    load_ground_truth,
    render_video,
    write_landing,
)

__all__ = [
    "EVENT_KINDS",
    "GROUND_TRUTH_SUFFIX",
    "MIN_VISIBLE_FRACTION",
    "RARE_CLASS",
    "RENDERER",
    "SyntheticEvent",
    "SyntheticScene",
    "ground_truth_key",
    "load_ground_truth",
    "random_events",
    "render_video",
    "write_landing",
]
