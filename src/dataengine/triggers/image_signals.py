"""Image heuristics on a clip's sampled frames: brightness and contrast, blur, frozen frames, scene cuts.

:func:`frame_stats` reduces the frames to a few numbers per frame, vectorised over the whole clip on a
subsampled luma image; each trigger then reads those numbers only, so the four cost about one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.triggers.base import TriggerResult
from dataengine.triggers.signals import check_lengths, unit

#: Rec. 601 luma weights of R, G, B.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Frames are subsampled so that their short side keeps about this many pixels for the global statistics.
STATS_SHORT_SIDE = 60
#: Sharpness is measured at full resolution (blur lives in the finest detail) on a central crop this big.
SHARPNESS_CROP = (240, 320)
_HIST_BINS = 32


@dataclass(frozen=True, slots=True)
class FrameStats:
    """Per-frame numbers of one clip (luma in 0..255) and between consecutive frames (length T - 1)."""

    mean_luma: NDArray[np.float64]
    contrast: NDArray[np.float64]
    sharpness: NDArray[np.float64]
    frame_change: NDArray[np.float64]
    histogram_change: NDArray[np.float64]


def luma_stack(frames: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """The (T, h, w) luma of RGB frames, subsampled by a stride that keeps ~:data:`STATS_SHORT_SIDE` px."""
    if not frames:
        return np.zeros((0, 1, 1), dtype=np.float32)
    stride = max(1, min(frames[0].shape[:2]) // STATS_SHORT_SIDE)
    stack = np.stack([np.asarray(f)[::stride, ::stride] for f in frames])
    luma: NDArray[np.float32] = stack.astype(np.float32) @ LUMA_WEIGHTS
    return luma


def sharpness(frames: Sequence[NDArray[np.uint8]]) -> NDArray[np.float64]:
    """Variance of the 4-neighbour Laplacian of each frame's luma, on a full-resolution central crop."""
    if not frames:
        return np.zeros(0)
    height, width = frames[0].shape[:2]
    ch, cw = min(SHARPNESS_CROP[0], height), min(SHARPNESS_CROP[1], width)
    top, left = (height - ch) // 2, (width - cw) // 2
    crop = np.stack([np.asarray(f)[top : top + ch, left : left + cw] for f in frames])
    luma = crop.astype(np.float32) @ LUMA_WEIGHTS
    if ch < 3 or cw < 3:
        return np.zeros(len(frames))
    lap = (
        4 * luma[:, 1:-1, 1:-1]
        - luma[:, :-2, 1:-1]
        - luma[:, 2:, 1:-1]
        - luma[:, 1:-1, :-2]
        - luma[:, 1:-1, 2:]
    )
    variance: NDArray[np.float64] = lap.reshape(len(frames), -1).var(axis=1).astype(np.float64)
    return variance


def frame_stats(frames: Sequence[NDArray[np.uint8]]) -> FrameStats:
    """Mean luma, contrast (luma std), sharpness (variance of the Laplacian) and changes between frames."""
    luma = luma_stack(frames)
    n = luma.shape[0]
    flat = luma.reshape(n, luma.shape[1] * luma.shape[2])
    bins = np.minimum((flat * (_HIST_BINS / 256.0)).astype(np.int64), _HIST_BINS - 1)
    offsets = np.arange(n, dtype=np.int64)[:, None] * _HIST_BINS
    counts = np.bincount((bins + offsets).ravel(), minlength=n * _HIST_BINS).reshape(n, _HIST_BINS)
    hist = counts / max(flat.shape[1], 1)
    return FrameStats(
        mean_luma=flat.mean(axis=1, dtype=np.float64),
        contrast=flat.std(axis=1, dtype=np.float64),
        sharpness=sharpness(frames),
        frame_change=np.abs(np.diff(flat, axis=0)).mean(axis=1, dtype=np.float64),
        histogram_change=np.abs(np.diff(hist, axis=0)).sum(axis=1) / 2.0,
    )


def _fired(frame_indices: Sequence[int], strength: NDArray[np.float64], *, offset: int = 0) -> list[int]:
    """Clip frame indices where ``strength`` (per frame, or per transition with ``offset=1``) >= 0.5."""
    return [int(frame_indices[int(i) + offset]) for i in np.flatnonzero(strength >= 0.5)]


def brightness_score(
    stats: FrameStats,
    frame_indices: Sequence[int],
    *,
    full_scale_jump: float = 64.0,
    dark: float = 40.0,
    bright: float = 215.0,
    flat_contrast: float = 12.0,
) -> TriggerResult:
    """Brightness jumps and brightness or contrast outliers: the largest of four parts, each in [0, 1].

    ``jump``: the largest change of mean luma between consecutive frames over ``full_scale_jump``;
    ``dark``/``bright``: how far a frame's mean luma lies beyond ``dark``/``bright`` (full at 30 levels);
    ``flat``: how far a frame's luma std lies under ``flat_contrast`` (full at 10 levels).
    """
    check_lengths(frame_indices, stats.mean_luma)
    jumps = np.clip(np.abs(np.diff(stats.mean_luma)) / full_scale_jump, 0.0, 1.0)
    darkness = np.clip((dark - stats.mean_luma) / 30.0, 0.0, 1.0)
    glare = np.clip((stats.mean_luma - bright) / 30.0, 0.0, 1.0)
    flat = np.clip((flat_contrast - stats.contrast) / 10.0, 0.0, 1.0)
    parts = {
        name: float(v.max(initial=0.0))
        for name, v in (("jump", jumps), ("dark", darkness), ("bright", glare), ("flat", flat))
    }
    frames = sorted(
        set(
            _fired(frame_indices, jumps, offset=1)
            + _fired(frame_indices, np.maximum.reduce([darkness, glare, flat]))
            if len(frame_indices)
            else []
        )
    )
    details: dict[str, Any] = {
        **{k: round(v, 6) for k, v in parts.items()},
        "mean_luma": [round(float(v), 2) for v in stats.mean_luma],
        "contrast": [round(float(v), 2) for v in stats.contrast],
    }
    return TriggerResult(score=unit(max(parts.values(), default=0.0)), frames=frames, details=details)


def blur_score(
    stats: FrameStats, frame_indices: Sequence[int], *, drop: float = 0.35, floor: float = 2.0
) -> TriggerResult:
    """Frames much blurrier than the clip's sharpest, or a clip blurry throughout (variance of the Laplacian).

    ``relative``: 0 while a frame keeps 0.8 of the sharpest frame's value (noise moves it less), 1 when
    it falls to ``drop``; ``absolute``: how far the sharpest frame's value lies under ``floor``.
    """
    check_lengths(frame_indices, stats.sharpness)
    sharp = stats.sharpness
    best = float(sharp.max(initial=0.0))
    ratio = sharp / best if best > 0 else np.ones_like(sharp)
    relative = np.clip((0.8 - ratio) / (0.8 - drop), 0.0, 1.0)
    absolute = unit((floor - best) / floor) if sharp.size else 0.0
    score = max(float(relative.max(initial=0.0)), absolute)
    details: dict[str, Any] = {
        "sharpness": [round(float(v), 3) for v in sharp],
        "min_ratio": round(float(ratio.min(initial=1.0)), 6),
        "absolute": round(absolute, 6),
    }
    return TriggerResult(score=unit(score), frames=_fired(frame_indices, relative), details=details)


def frozen_score(
    stats: FrameStats, frame_indices: Sequence[int], *, still: float = 0.5, relative: float = 0.4
) -> TriggerResult:
    """Consecutive frames that are (almost) identical: a stuck camera or a repeating encoder.

    A transition is frozen when its mean absolute luma difference is under ``still`` levels, or under
    ``relative`` times the clip's 75th-percentile difference (an encoder keeps refining a repeated frame,
    so the copy never differs by exactly 0, but by far less than sensor noise moves live frames). The
    score is twice the frozen share of transitions, capped at 1.
    """
    check_lengths(frame_indices[1:] if frame_indices else [], stats.frame_change)
    change = stats.frame_change
    typical = float(np.percentile(change, 75)) if change.size else 0.0
    frozen = change < max(still, relative * typical)
    share = float(frozen.mean()) if frozen.size else 0.0
    details: dict[str, Any] = {
        "frozen_transitions": int(frozen.sum()),
        "frame_change": [round(float(v), 3) for v in change],
    }
    fired = _fired(frame_indices, frozen.astype(np.float64), offset=1)
    return TriggerResult(score=unit(2.0 * share), frames=fired, details=details)


def scene_cut_score(
    stats: FrameStats, frame_indices: Sequence[int], *, calm: float = 0.15, full: float = 0.5
) -> TriggerResult:
    """A cut between consecutive frames: half the L1 distance of their 32-bin luma histograms.

    0 at or under ``calm`` (moving objects and noise stay there), 1 at ``full`` and above.
    """
    check_lengths(frame_indices[1:] if frame_indices else [], stats.histogram_change)
    strength = np.clip((stats.histogram_change - calm) / (full - calm), 0.0, 1.0)
    details: dict[str, Any] = {"histogram_change": [round(float(v), 4) for v in stats.histogram_change]}
    return TriggerResult(
        score=unit(float(strength.max(initial=0.0))),
        frames=_fired(frame_indices, strength, offset=1),
        details=details,
    )
