"""The compiled per-pixel pass (triggers/pixels.py) against the numpy code it replaced: the image
statistics, the thumbnails and the anomaly errors are equal to the last bit, on synthetic scenes with
events, a real street video and random frames of many sizes (small, the crop path of large frames,
frames under 3x3 sampled pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from numpy.typing import NDArray

from dataengine.synthetic.inject import InjectedEvent, inject
from dataengine.synthetic.scene import SyntheticEvent, SyntheticScene
from dataengine.triggers.anomaly import THUMBNAIL, ConvAutoencoder, one_thread, thumbnails, train_autoencoder
from dataengine.triggers.base import ClipFrames
from dataengine.triggers.image_signals import (
    LUMA_BLOCK,
    SHARPNESS_STRIDE,
    FrameStats,
    _sharpness_crop,
    _stats_stride,
    frame_stats_many,
)
from dataengine.triggers.pixels import luma_into, thumbnails_into
from real_video import BIKES, sample_video

Frames = list[NDArray[np.uint8]]


# The numpy code before the compiled pass (issue 17, 3 Dec), kept here as the reference.
def reference_luma(stack: NDArray[np.uint8], stride: int) -> NDArray[np.float32]:
    sub = stack[:, ::stride, ::stride]
    luma = sub[..., 0].astype(np.uint16) * np.uint16(77)
    luma += sub[..., 1].astype(np.uint16) * np.uint16(150)
    luma += sub[..., 2].astype(np.uint16) * np.uint16(29)
    out: NDArray[np.float32] = luma.astype(np.float32) * np.float32(1.0 / 256.0)
    return out


def reference_laplacian_variance(luma: NDArray[np.float32]) -> NDArray[np.float64]:
    n, h, w = luma.shape
    if h < 3 or w < 3:
        return np.zeros(n)
    lap = 4 * luma[:, 1:-1, 1:-1]
    lap -= luma[:, :-2, 1:-1]
    lap -= luma[:, 2:, 1:-1]
    lap -= luma[:, 1:-1, :-2]
    lap -= luma[:, 1:-1, 2:]
    out: NDArray[np.float64] = lap.reshape(n, -1).var(axis=1).astype(np.float64)
    return out


def reference_stats(frames: Frames) -> tuple[NDArray[np.float64], ...]:
    """(mean, contrast, sharpness, histograms, frame changes) of frames of one size, as numpy did them."""
    n = len(frames)
    mean, contrast, sharp = np.zeros(n), np.zeros(n), np.zeros(n)
    hist, change = np.zeros((n, 32)), np.zeros(max(n - 1, 0))
    stride = _stats_stride(frames[0].shape)
    rows, cols = _sharpness_crop(frames[0].shape)
    whole = (rows.stop - rows.start, cols.stop - cols.start) == frames[0].shape[:2]
    previous = None
    for start in range(0, n, LUMA_BLOCK):
        block = frames[start : start + LUMA_BLOCK]
        done = slice(start, start + len(block))
        luma = reference_luma(np.stack(block), stride)
        flat = luma.reshape(len(block), -1)
        mean[done] = flat.mean(axis=1)
        contrast[done] = flat.std(axis=1)
        if whole and stride == SHARPNESS_STRIDE:
            sharp[done] = reference_laplacian_variance(luma)
        else:
            crops = np.stack([f[rows, cols] for f in block])
            sharp[done] = reference_laplacian_variance(reference_luma(crops, SHARPNESS_STRIDE))
        bins = np.floor(luma.reshape(len(block), -1) / 8).astype(np.intp)
        hist[done] = np.stack([np.bincount(b, minlength=32) for b in bins]) / max(flat.shape[1], 1)
        sequence = flat if previous is None else np.concatenate([previous[None], flat])
        first = start if previous is None else start - 1
        change[first : start + len(block) - 1] = np.abs(np.diff(sequence, axis=0)).mean(axis=1)
        previous = flat[-1].copy()
    return mean, contrast, sharp, np.abs(np.diff(hist, axis=0)).sum(axis=1) / 2.0, change


def reference_thumbnails(frames: Frames) -> torch.Tensor:
    height, width = frames[0].shape[:2]
    stride = max(1, min(height // THUMBNAIL[0], width // THUMBNAIL[1]))
    stack = np.stack([f[::stride, ::stride] for f in frames])
    images = torch.from_numpy(stack).permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(images.shape[-2:]) == THUMBNAIL:
        return images
    return F.adaptive_avg_pool2d(images, THUMBNAIL)


def assert_stats_equal(clips: Sequence[Frames], stats: Sequence[FrameStats]) -> None:
    mean, contrast, sharp, hist_change, change = reference_stats([f for c in clips for f in c])
    start = 0
    for clip, s in zip(clips, stats, strict=True):
        end = start + len(clip)
        steps = slice(start, max(start, end - 1))
        assert np.array_equal(s.mean_luma, mean[start:end])
        assert np.array_equal(s.contrast, contrast[start:end])
        assert np.array_equal(s.sharpness, sharp[start:end])
        assert np.array_equal(s.histogram_change, hist_change[steps])
        assert np.array_equal(s.frame_change, change[steps])
        start = end


def scene_frames(seed: int) -> list[Frames]:
    scene = SyntheticScene(
        seed=seed, width=160, height=120, n_frames=100,
        events=[SyntheticEvent("lighting", 20, 30), SyntheticEvent("occlusion", 50, 60)],
    )  # fmt: skip
    rgb = inject([f for _, f, _ in scene.frames()], InjectedEvent("freeze", 70, 80))
    rgb = inject(rgb, InjectedEvent("blur", 84, 92))
    return [[rgb[i] for i in range(start, start + 20, 4)] for start in range(0, 100, 20)]


def bikes_frames(n: int = 40) -> Frames:
    frames = []
    with av.open(str(sample_video(BIKES))) as container:
        for frame in container.decode(video=0):
            rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            frames.append(rgb)
            if len(frames) == n:
                break
    return frames


def test_the_statistics_equal_numpys_on_scenes_and_a_real_video() -> None:
    clips = [clip for seed in range(3) for clip in scene_frames(seed)]  # 75 frames: several blocks
    assert_stats_equal(clips, frame_stats_many(clips))
    bikes = bikes_frames()  # 1280x720: the statistics' stride is 12, sharpness on a central crop
    real = [bikes[i : i + 5] for i in range(0, len(bikes), 5)]
    stats = frame_stats_many(real)
    assert_stats_equal(real, stats)
    assert all(s.sharpness.min() > 0 and s.contrast.min() > 10 for s in stats)


@pytest.mark.parametrize(
    "shape", [(120, 160, 3), (480, 640, 3), (250, 333, 3), (61, 59, 3), (7, 9, 3), (4, 4, 3), (1, 2, 3)]
)
def test_the_statistics_and_thumbnails_equal_numpys_on_random_frames(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    clips = [[rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(k)] for k in (1, 5, 3, 40)]
    assert_stats_equal(clips, frame_stats_many(clips))
    frames = [f for c in clips for f in c]
    new, old = thumbnails(frames), reference_thumbnails(frames)
    assert new.shape == old.shape == (len(frames), 3, *THUMBNAIL)
    # The same values in the same memory order (which decides the convolutions' path, and so the bits).
    assert torch.equal(new, old)
    assert new.stride() == old.stride()


def test_luma_reads_any_view_and_names_bad_frames() -> None:
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    crop = frame[3:40, 5:66]  # not contiguous
    luma, hist = np.empty((1, 19, 31), np.float32), np.empty((1, 32), np.int64)
    lap = np.empty((1, 17, 29), np.float32)
    luma_into([crop], 2, luma, hist, lap)
    expected = reference_luma(crop[None], 2)
    assert np.array_equal(luma, expected)
    assert np.array_equal(hist[0], np.bincount(np.floor(expected.ravel() / 8).astype(int), minlength=32))
    assert lap.reshape(1, -1).var(axis=1)[0] == reference_laplacian_variance(expected)[0]
    with pytest.raises(ValueError, match="uint8 RGB array, not float32"):
        luma_into([frame.astype(np.float32)], 2, luma, hist)
    with pytest.raises(ValueError, match=r"uint8 RGB array, not uint8 \(50, 70\)"):
        thumbnails_into([frame[..., 0]], 2)
    with pytest.raises(ValueError, match="one size"):
        thumbnails_into([frame, frame[:10]], 2)
    with pytest.raises(ValueError, match="does not fit"):
        luma_into([frame], 3, luma, hist)


def test_anomaly_errors_equal_those_of_the_reference_thumbnails() -> None:
    clips = [ClipFrames(f"c{i}", list(range(5)), frames) for i, frames in enumerate(scene_frames(7))]
    anomaly = train_autoencoder(clips, epochs=1)
    frames = [f for c in clips for f in c.frames]
    with torch.inference_mode(), one_thread():
        images = reference_thumbnails(frames)
        expected = ((anomaly.model(images) - images) ** 2).mean(dim=(1, 2, 3)).double().numpy()
    assert np.array_equal(anomaly.frame_errors(frames), expected)
    assert isinstance(anomaly.model, ConvAutoencoder)
