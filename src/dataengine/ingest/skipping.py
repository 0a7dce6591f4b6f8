"""Which frames ingest need not decode: nothing is written from them and no decoded frame refers to them.

A stream-copied clip needs only its sampled frames decoded, and those need the reference frames they
are predicted from. Two kinds of frame are therefore left out of the decoder (docs/ingest.md):

- non-reference pictures (H.264 ``nal_ref_idc`` 0) that are not sampled: nothing is predicted from
  them, so the sampled frames decode to exactly the same pixels;
- reference pictures after the last needed frame of a GOP, in decode order, up to the next IDR
  picture: an IDR picture starts over, so nothing after it refers to them.

Every frame of a re-encoded clip is needed, and so is every frame when scene cuts are looked for (each
frame's thumbnail counts); frames whose packets are not plain H.264 are always decoded.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dataengine.ingest.clipper import Sampler
from dataengine.ingest.index import IDR, NON_REFERENCE, UNKNOWN, FrameIndex
from dataengine.ingest.plan import COPY, ClipPlan, encoding_for


def needed_frames(
    index: FrameIndex, plan: ClipPlan, *, sample_fps: float, copyable: bool
) -> NDArray[np.bool_]:
    """Per frame, whether something is made from it: a sampled JPEG, or a re-encoded clip."""
    needed = np.zeros(index.n_frames, dtype=np.bool_)
    for start in plan.starts:
        end = plan.end_of(start)
        if encoding_for(index, start=start, end=end, copyable=copyable) != COPY:
            needed[start:end] = True
            continue
        sampler = Sampler(index, start_frame=start, sample_fps=sample_fps)
        needed[start:end] = [sampler.take(number) for number in range(start, end)]
    return needed


def frames_to_skip(index: FrameIndex, needed: NDArray[np.bool_]) -> NDArray[np.bool_] | None:
    """Per frame, True when it need not be decoded; None when nothing can be skipped safely."""
    picture, decode_order = index.picture, index.decode_order
    if picture is None or decode_order is None or bool(needed.all()):
        return None
    skip = np.zeros(index.n_frames, dtype=np.bool_)
    # Walk back through decode order: a reference frame is needed when a needed frame of its GOP
    # (up to the next IDR) comes after it; an unknown packet counts as needed, as it may refer to any.
    needed_later = False
    for number in decode_order[::-1].tolist():
        kind = int(picture[number])
        if needed[number] or kind == UNKNOWN:
            needed_later = True
        elif kind == NON_REFERENCE or not needed_later:
            skip[number] = True
        if kind == IDR:
            needed_later = False
    return skip if bool(skip.any()) else None


def missing_frames(start: int, end: int, skip: NDArray[np.bool_] | None) -> tuple[int, int] | None:
    """The stretch of ``[start, end)`` that should have come out of the decoder but did not.

    None when every frame of it was skipped on purpose.
    """
    if end <= start:
        return None
    if skip is None:
        return start, end
    expected = np.flatnonzero(~skip[start:end])
    if expected.size == 0:
        return None
    return start + int(expected[0]), start + int(expected[-1]) + 1
