"""Image heuristics on a clip's sampled frames: brightness and contrast, blur, frozen frames, scene cuts.

:func:`frame_stats` reduces the frames to a few numbers per frame, vectorised over the whole clip on a
subsampled luma image (:func:`frame_stats_many`: over many clips at once); each trigger then reads
those numbers only, so the four cost about one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.triggers.base import TriggerResult
from dataengine.triggers.pixels import HIST_BINS, luma_into, sampled_shape
from dataengine.triggers.signals import check_lengths, unit

#: Rec. 601 luma weights of R, G, B (0.299, 0.587, 0.114) in 8-bit fixed point: they sum to 256, so the
#: luma of uint8 pixels is an exact uint16 sum divided by 256 (and integer maths is several times faster
#: than converting every pixel to float).
LUMA_WEIGHTS_256 = (77, 150, 29)
#: Frames are subsampled so that their short side keeps about this many pixels for the global statistics.
STATS_SHORT_SIDE = 60
#: Sharpness is measured on a central crop at most this big (height, width) ...
SHARPNESS_CROP = (240, 320)
#: ... sampled every SHARPNESS_STRIDE-th pixel: blur lives in fine detail, and every 2nd pixel still
#: shows a defocus of 1 px or more, at a quarter of the cost of full resolution.
SHARPNESS_STRIDE = 2
_HIST_BINS = HIST_BINS


@dataclass(frozen=True, slots=True)
class FrameStats:
    """Per-frame numbers of one clip (luma in 0..255) and between consecutive frames (length T - 1)."""

    mean_luma: NDArray[np.float64]
    contrast: NDArray[np.float64]
    sharpness: NDArray[np.float64]
    frame_change: NDArray[np.float64]
    histogram_change: NDArray[np.float64]
    #: How much this camera's frames typically change between samples: the median ``frame_change`` of
    #: every clip of the same video scored together (None when the clip was measured alone).
    typical_change: float | None = None


def luma_stack(frames: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """The (T, h, w) luma of RGB frames, subsampled by a stride that keeps ~:data:`STATS_SHORT_SIDE` px."""
    if not frames:
        return np.zeros((0, 1, 1), dtype=np.float32)
    return _luma(np.stack(frames), _stats_stride(frames[0].shape))


def _stats_stride(shape: tuple[int, ...]) -> int:
    return max(1, min(shape[:2]) // STATS_SHORT_SIDE)


def _luma(stack: NDArray[np.uint8], stride: int) -> NDArray[np.float32]:
    """The luma (0..255) of a (T, H, W, 3) stack sampled every ``stride`` pixels (only those are read)."""
    return _to_float(_luma_256(stack, stride))


def _luma_256(stack: NDArray[np.uint8], stride: int) -> NDArray[np.uint16]:
    """256 times the luma of the sampled pixels, exactly, as uint16 (fixed-point weights)."""
    sub = stack[:, ::stride, ::stride] if stride > 1 else stack
    red, green, blue = LUMA_WEIGHTS_256
    luma: NDArray[np.uint16] = sub[..., 0].astype(np.uint16) * np.uint16(red)
    luma += sub[..., 1].astype(np.uint16) * np.uint16(green)
    luma += sub[..., 2].astype(np.uint16) * np.uint16(blue)
    return luma


#: Frames converted together: a block's pixels stay in the CPU cache, which converting a whole chunk's
#: stack at once (tens of MB) does not (about 3x slower on 1,280 frames of 160x120).
LUMA_BLOCK = 32


def _to_float(luma_256: NDArray[np.uint16]) -> NDArray[np.float32]:
    luma: NDArray[np.float32] = luma_256.astype(np.float32) * np.float32(1.0 / 256.0)
    return luma


def _sharpness_crop(shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The central crop, at most :data:`SHARPNESS_CROP` pixels, that sharpness is measured on."""
    height, width = shape[:2]
    ch, cw = min(SHARPNESS_CROP[0], height), min(SHARPNESS_CROP[1], width)
    top, left = (height - ch) // 2, (width - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


def _laplacian_variance(luma: NDArray[np.float32]) -> NDArray[np.float64]:
    """Variance of the 4-neighbour Laplacian of each (T, h, w) luma image (0 when under 3x3)."""
    n, h, w = luma.shape
    if h < 3 or w < 3:
        return np.zeros(n)
    lap = 4 * luma[:, 1:-1, 1:-1]
    lap -= luma[:, :-2, 1:-1]
    lap -= luma[:, 2:, 1:-1]
    lap -= luma[:, 1:-1, :-2]
    lap -= luma[:, 1:-1, 2:]
    variance: NDArray[np.float64] = lap.reshape(n, -1).var(axis=1).astype(np.float64)
    return variance


def sharpness(frames: Sequence[NDArray[np.uint8]]) -> NDArray[np.float64]:
    """Variance of the 4-neighbour Laplacian of each frame's luma, sampled every
    :data:`SHARPNESS_STRIDE` pixels of a central crop of at most :data:`SHARPNESS_CROP`."""
    if not frames:
        return np.zeros(0)
    rows, cols = _sharpness_crop(frames[0].shape)
    return _laplacian_variance(_luma(np.stack(frames)[:, rows, cols], SHARPNESS_STRIDE))


def frame_stats(frames: Sequence[NDArray[np.uint8]]) -> FrameStats:
    """Mean luma, contrast (luma std), sharpness (variance of the Laplacian) and changes between frames."""
    return frame_stats_many([frames])[0]


def frame_stats_many(
    clips: Sequence[Sequence[NDArray[np.uint8]]], groups: Sequence[str | None] | None = None
) -> list[FrameStats]:
    """:func:`frame_stats` of many clips: frames of one size are converted in one stacked pass (per-call
    overhead dominates on small frames), and the numbers are then split per clip.

    ``groups`` names each clip's video (or camera): clips of one group share a
    :attr:`FrameStats.typical_change`, the median change between samples over all of them.
    """
    stats = _frame_stats_many(clips)
    return stats if groups is None else with_typical_change(stats, groups)


def with_typical_change(stats: Sequence[FrameStats], groups: Sequence[str | None]) -> list[FrameStats]:
    """``stats`` with :attr:`FrameStats.typical_change` set per group (a None group stays alone)."""
    if len(groups) != len(stats):
        raise ValueError(f"{len(groups)} group names for {len(stats)} clips")
    pooled: dict[str, list[NDArray[np.float64]]] = {}
    for group, clip_stats in zip(groups, stats, strict=True):
        if group is not None:
            pooled.setdefault(group, []).append(clip_stats.frame_change)
    changes = {group: np.concatenate(parts) for group, parts in pooled.items()}
    typical = {group: float(np.median(values)) for group, values in changes.items() if values.size}
    return [
        replace(s, typical_change=typical.get(g)) if g is not None else s
        for s, g in zip(stats, groups, strict=True)
    ]


def _frame_stats_many(clips: Sequence[Sequence[NDArray[np.uint8]]]) -> list[FrameStats]:
    sizes = {np.shape(f) for frames in clips for f in frames}
    if len(sizes) > 1:
        return [_frame_stats_many([frames])[0] for frames in clips]
    lengths = [len(frames) for frames in clips]
    frames = [f for clip in clips for f in clip]
    n = len(frames)
    mean, contrast, sharp = np.zeros(n), np.zeros(n), np.zeros(n)
    hist = np.zeros((n, _HIST_BINS))
    change = np.zeros(max(n - 1, 0))
    if n:
        shape = sizes.pop()
        stride = _stats_stride(shape)
        rows, cols = _sharpness_crop(shape)
        whole = (rows.stop - rows.start, cols.stop - cols.start) == tuple(shape[:2])
        # One block's buffers, reused: the compiled pass (pixels.luma_into) writes each frame's luma,
        # histogram and Laplacian straight into them, and numpy's reductions read them while cached.
        h, w = sampled_shape(shape, stride)
        luma_buffer = np.empty((LUMA_BLOCK, h, w), dtype=np.float32)
        hist_buffer = np.empty((LUMA_BLOCK, HIST_BINS), dtype=np.int64)
        shared = whole and stride == SHARPNESS_STRIDE
        crop = (rows.stop - rows.start, cols.stop - cols.start)
        ch, cw = (h, w) if shared else sampled_shape(crop, SHARPNESS_STRIDE)
        lap_buffer = np.empty((LUMA_BLOCK, max(ch - 2, 0), max(cw - 2, 0)), dtype=np.float32)
        if not shared:
            crop_buffer = np.empty((LUMA_BLOCK, ch, cw), dtype=np.float32)
            crop_hist = np.empty((LUMA_BLOCK, HIST_BINS), dtype=np.int64)
        previous: NDArray[np.float32] | None = None
        # Every number of a block of frames is taken while its pixels are still in the CPU cache.
        for start in range(0, n, LUMA_BLOCK):
            block = frames[start : start + LUMA_BLOCK]
            k = len(block)
            done = slice(start, start + k)
            luma = luma_buffer[:k]
            if shared:
                # The statistics' luma is already the crop at the sharpness stride: no second conversion.
                luma_into(block, stride, luma, hist_buffer, lap_buffer)
            else:
                luma_into(block, stride, luma, hist_buffer)
                crops = [f[rows, cols] for f in block]
                luma_into(crops, SHARPNESS_STRIDE, crop_buffer[:k], crop_hist, lap_buffer)
            flat = luma.reshape(k, -1)
            # float32 reductions are pairwise sums (accurate to ~1e-6 here), far faster than float64.
            mean[done] = flat.mean(axis=1)
            contrast[done] = flat.std(axis=1)
            if ch >= 3 and cw >= 3:
                sharp[done] = lap_buffer[:k].reshape(k, -1).var(axis=1).astype(np.float64)
            hist[done] = hist_buffer[:k] / max(flat.shape[1], 1)
            # Changes between each frame and the next, the previous block's last frame included.
            sequence = flat if previous is None else np.concatenate([previous[None], flat])
            first = start if previous is None else start - 1
            change[first : start + k - 1] = np.abs(np.diff(sequence, axis=0)).mean(axis=1)
            previous = flat[-1].copy()
    hist_change = np.abs(np.diff(hist, axis=0)).sum(axis=1) / 2.0
    out, start = [], 0
    for length in lengths:
        end = start + length
        # Changes across two clips' boundary are dropped.
        out.append(
            FrameStats(
                mean_luma=mean[start:end],
                contrast=contrast[start:end],
                sharpness=sharp[start:end],
                frame_change=change[start : max(start, end - 1)],
                histogram_change=hist_change[start : max(start, end - 1)],
            )
        )
        start = end
    return out


def _histograms(luma_256: NDArray[np.uint16]) -> NDArray[np.int64]:
    """The 32-bin luma histogram (counts) of each frame of a (T, h, w) fixed-point luma stack."""
    n = luma_256.shape[0]
    # Luma / 8 (32 bins of 8 levels) is the fixed-point luma shifted right by 8 + 3 bits.
    index = (luma_256 >> 11).reshape(n, -1).astype(np.intp)
    index += (np.arange(n, dtype=np.intp) * _HIST_BINS)[:, None]
    counts: NDArray[np.int64] = np.bincount(index.ravel(), minlength=n * _HIST_BINS).reshape(n, _HIST_BINS)
    return counts


def rounded(values: NDArray[np.floating[Any]], digits: int) -> list[float]:
    """``values`` rounded to ``digits`` decimals, as a JSON-ready list (for a result's details)."""
    out: list[float] = np.round(np.asarray(values, dtype=np.float64), digits).tolist()
    return out


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
        "mean_luma": rounded(stats.mean_luma, 2),
        "contrast": rounded(stats.contrast, 2),
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
        "sharpness": rounded(sharp, 3),
        "min_ratio": round(float(ratio.min(initial=1.0)), 6),
        "absolute": round(absolute, 6),
    }
    return TriggerResult(score=unit(score), frames=_fired(frame_indices, relative), details=details)


def frozen_score(
    stats: FrameStats, frame_indices: Sequence[int], *, still: float = 0.5, relative: float = 0.4
) -> TriggerResult:
    """Consecutive frames that are (almost) identical: a stuck camera or a repeating encoder.

    A transition is frozen when its mean absolute luma difference is under ``still`` levels, or under
    ``relative`` times the camera's typical difference (an encoder keeps refining a repeated frame, so
    the copy never differs by exactly 0, but by far less than sensor noise moves live frames). The
    typical difference is :attr:`FrameStats.typical_change`, the median over the same video's clips
    scored together, else the clip's own median. The score is twice the frozen share of transitions,
    capped at 1.
    """
    check_lengths(frame_indices[1:] if frame_indices else [], stats.frame_change)
    change = stats.frame_change
    # Why not the clip's own changes alone: a lighting change or a cut makes two or three of a clip's
    # few transitions large, and every ordinary transition then looks still beside them.
    typical = stats.typical_change
    if typical is None:
        typical = float(np.median(change)) if change.size else 0.0
    frozen = change < max(still, relative * typical)
    share = float(frozen.mean()) if frozen.size else 0.0
    details: dict[str, Any] = {
        "frozen_transitions": int(frozen.sum()),
        "frame_change": rounded(change, 3),
        "typical_change": round(typical, 3),
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
    details: dict[str, Any] = {"histogram_change": rounded(stats.histogram_change, 4)}
    return TriggerResult(
        score=unit(float(strength.max(initial=0.0))),
        frames=_fired(frame_indices, strength, offset=1),
        details=details,
    )
