"""The trigger pass's per-pixel work in compiled code (numba): luma, its histogram and Laplacian, and
the anomaly autoencoder's thumbnails, read straight from each frame.

numpy needed a stacked copy of every block of frames (the whole frame, although a quarter of its pixels
is read), then one pass over memory per operation, on strided views at 12-15 ns a pixel. Here each frame
is read once, at the pixels needed. Everything computed here is exact (integer luma, and float32 values
that are small multiples of 1/256), so it equals the numpy code it replaced to the last bit; the floating
reductions (means, variances) stay in numpy and are unchanged.

The kernels are compiled on first use (numba is imported then, not at import time) and cached on disk
(numba's ``cache=True``: next to this file, or in the user's cache directory when that is read-only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Rec. 601 luma weights of R, G, B (0.299, 0.587, 0.114) in 8-bit fixed point: they sum to 256, so the
#: luma of uint8 pixels is an exact integer sum divided by 256.
LUMA_WEIGHTS_256 = (77, 150, 29)
#: Luma histogram bins (each 8 levels wide).
HIST_BINS = 32

_JIT: dict[str, Any] = {"cache": True, "nogil": True, "boundscheck": False}


def _luma_kernel(
    frame: NDArray[np.uint8],
    stride: int,
    luma: NDArray[np.float32],
    hist: NDArray[np.int64],
    lap: NDArray[np.float32],
    with_lap: bool,
) -> None:  # pragma: no cover - compiled; its results are compared with numpy's in the tests
    h, w = luma.shape
    width = frame.shape[1]
    pixels = frame.ravel()  # a view of a contiguous frame (a copy of a cropped one)
    scale = np.float32(1.0 / 256.0)
    # Four partial histograms: neighbouring pixels often share a bin, and one counter would make each
    # increment wait for the last.
    partial = np.zeros((4, 32), dtype=np.int64)
    for y in range(h):
        row = y * stride * width * 3
        out = luma[y]
        for x in range(w):
            p = row + x * stride * 3
            fixed = np.int32(pixels[p]) * 77 + np.int32(pixels[p + 1]) * 150 + np.int32(pixels[p + 2]) * 29
            out[x] = np.float32(fixed) * scale
            partial[x & 3, fixed >> 11] += 1
    for b in range(32):
        hist[b] = partial[0, b] + partial[1, b] + partial[2, b] + partial[3, b]
    if with_lap:
        # Multiples of 1/256 under 1,024 in magnitude: every float32 step here is exact.
        four = np.float32(4.0)
        for y in range(1, h - 1):
            for x in range(1, w - 1):
                lap[y - 1, x - 1] = (
                    four * luma[y, x] - luma[y - 1, x] - luma[y + 1, x] - luma[y, x - 1] - luma[y, x + 1]
                )


def _thumb_kernel(
    frame: NDArray[np.uint8], stride: int, out: NDArray[np.float32]
) -> None:  # pragma: no cover - compiled; compared with the numpy/torch reference in the tests
    h, w, _ = out.shape
    width = frame.shape[1]
    pixels = frame.ravel()
    full = np.float32(255.0)
    for y in range(h):
        row = y * stride * width * 3
        for x in range(w):
            p = row + x * stride * 3
            for c in range(3):
                out[y, x, c] = np.float32(pixels[p + c]) / full


@functools.cache
def _compiled() -> tuple[Callable[..., None], Callable[..., None]]:
    """The two kernels, compiled (the first call in a process loads them from numba's cache or compiles
    them, about a second)."""
    from numba import njit  # here, not at import: numba is heavy, and its cache set-up touches the disk

    luma: Callable[..., None] = njit(**_JIT)(_luma_kernel)
    thumb: Callable[..., None] = njit(**_JIT)(_thumb_kernel)
    return luma, thumb


def _checked(frame: NDArray[Any], shape: tuple[int, ...] | None = None) -> NDArray[np.uint8]:
    """``frame`` as it is, if it is an (H, W, 3) uint8 RGB image (of ``shape``); else a ValueError."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"a frame must be an (H, W, 3) uint8 RGB array, not {what}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frames of one call must have one size: {frame.shape} after {shape}")
    return frame


def sampled_shape(shape: tuple[int, ...], stride: int) -> tuple[int, int]:
    """The (h, w) of ``frame[::stride, ::stride]`` for a frame of ``shape``."""
    return -(-shape[0] // stride), -(-shape[1] // stride)


def luma_into(
    frames: Sequence[NDArray[np.uint8]],
    stride: int,
    luma: NDArray[np.float32],
    hist: NDArray[np.int64],
    lap: NDArray[np.float32] | None = None,
) -> None:
    """Per frame ``t``: ``luma[t]`` = the luma (0..255) of ``frames[t][::stride, ::stride]``, ``hist[t]``
    its :data:`HIST_BINS`-bin histogram (counts), and when ``lap`` is given, ``lap[t]`` its 4-neighbour
    Laplacian (``(h - 2, w - 2)``; frames under 3x3 sampled pixels leave it untouched)."""
    if not frames:
        return
    shape = _checked(frames[0]).shape
    h, w = sampled_shape(shape, stride)
    if luma.shape[1:] != (h, w) or luma.shape[0] < len(frames) or hist.shape[0] < len(frames):
        raise ValueError(f"luma buffer {luma.shape} does not fit {len(frames)} frames sampled to {h}x{w}")
    laps = lap if h >= 3 and w >= 3 else None
    none = np.zeros((0, 0), dtype=np.float32)
    kernel = _compiled()[0]
    for t, frame in enumerate(frames):
        target = none if laps is None else laps[t]
        kernel(_checked(frame, shape), stride, luma[t], hist[t], target, laps is not None)


def thumbnails_into(frames: Sequence[NDArray[np.uint8]], stride: int) -> NDArray[np.float32]:
    """The (T, h, w, 3) float32 images ``frames[t][::stride, ::stride]`` in [0, 1] (pixel / 255)."""
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.float32)
    shape = _checked(frames[0]).shape
    h, w = sampled_shape(shape, stride)
    out = np.empty((len(frames), h, w, 3), dtype=np.float32)
    kernel = _compiled()[1]
    for t, frame in enumerate(frames):
        kernel(_checked(frame, shape), stride, out[t])
    return out
