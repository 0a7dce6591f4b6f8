"""Where clips start: every ``clip_seconds`` of video time, moved to a clean keyframe when one is near.

A clip whose start and end are both clean keyframes (or the end of the video) is cut by stream copy;
any other clip is re-encoded. Boundaries follow a fixed grid from the first frame, so moving one to a
keyframe never shifts the ones after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataengine.ingest.index import FrameIndex

COPY = "copy"
REENCODE = "reencode"


@dataclass(frozen=True, slots=True)
class ClipPlan:
    """The planned clips of one video: their start frames (ascending, first 0) and the frame count."""

    starts: tuple[int, ...]
    n_frames: int

    def end_of(self, start: int) -> int:
        """The planned end (exclusive) of the clip that starts at or contains ``start``."""
        position = int(np.searchsorted(self.starts, start, side="right"))
        return self.starts[position] if position < len(self.starts) else self.n_frames


def plan_clips(index: FrameIndex, *, clip_seconds: float, tolerance: float) -> ClipPlan:
    """Clip starts every ``clip_seconds``, each moved to the nearest clean keyframe within ``tolerance`` s."""
    times = index.times
    clean = np.flatnonzero(index.clean)
    # A boundary is the first frame at or after each multiple of clip_seconds (float slack only).
    slack = 1e-6
    starts = [0]
    k = 1
    while True:
        nominal = int(np.searchsorted(times, k * clip_seconds - slack))
        if nominal >= index.n_frames:
            break
        start = _snap(times, clean, nominal, tolerance=tolerance, after=starts[-1])
        if start > starts[-1]:
            starts.append(start)
        k += 1
    return ClipPlan(starts=tuple(starts), n_frames=index.n_frames)


def _snap(times: np.ndarray, clean: np.ndarray, nominal: int, *, tolerance: float, after: int) -> int:
    """The clean keyframe nearest ``nominal`` within ``tolerance`` seconds and after ``after``."""
    if clean.size == 0:
        return nominal
    position = int(np.searchsorted(clean, nominal))
    candidates = [int(c) for c in clean[max(0, position - 1) : position + 1] if c > after]
    near = [c for c in candidates if abs(times[c] - times[nominal]) <= tolerance + 1e-9]
    if not near:
        return nominal
    return min(near, key=lambda c: (abs(times[c] - times[nominal]), c))


def encoding_for(index: FrameIndex, *, start: int, end: int, copyable: bool) -> str:
    """``copy`` when the clip ``[start, end)`` can be cut without decoding, else ``reencode``."""
    ends_clean = end >= index.n_frames or bool(index.clean[end])
    if copyable and not index.by_arrival and bool(index.clean[start]) and ends_clean:
        return COPY
    return REENCODE
