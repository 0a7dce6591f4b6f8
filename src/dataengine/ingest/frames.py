"""Sampled frames → upright JPEGs in the store, on worker threads beside the decoder.

JPEG encoding and the store's writes release the GIL, so they run on the second core while FFmpeg's
own threads decode. At most ``2 * workers`` frames wait at a time: memory stays bounded however fast
the decoder is.

A frame the decoder gives as 8-bit YUV 4:2:0 in BT.601 (or unspecified) colours is encoded from its
own Y, U and V planes (libjpeg-turbo's raw-data path, ``simplejpeg``): only the range is stretched to
JPEG's full range, where going through RGB would convert to RGB, and libjpeg back to YCbCr, and
subsample the colour again. Every other frame goes through RGB (Pillow), as all frames did before.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import av
import numpy as np
import simplejpeg
from numpy.typing import NDArray

from dataengine.clips import encode_jpeg
from dataengine.storage import ObjectStore

THUMB_SIZE = (32, 18)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` shrunk to fit ``max_side`` on the longest side, keeping the aspect ratio."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def upright_rgb(frame: av.VideoFrame, *, rotation: int, max_side: int | None) -> NDArray[np.uint8]:
    """The frame as RGB ``uint8`` as it is meant to be seen: rotated, and capped at ``max_side``."""
    width, height = scaled_size(frame.width, frame.height, max_side)
    if (width, height) != (frame.width, frame.height):
        frame = frame.reformat(width=width, height=height, interpolation="AREA")
    rgb: NDArray[np.uint8] = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb


# Decoder formats and colour matrices the JPEG is encoded from directly: 8-bit 4:2:0, in the BT.601
# matrix (AVCOL_SPC_BT470BG, AVCOL_SPC_SMPTE170M) that every JPEG decoder assumes, or unspecified, which
# swscale takes as BT.601 when it converts to RGB.
_PLANAR_FORMATS = frozenset({"yuv420p", "yuvj420p"})
_BT601_COLORSPACES = frozenset({2, 5, 6})


def planar_jpeg(frame: av.VideoFrame, *, quality: int, rotation: int, max_side: int | None) -> bytes | None:
    """JPEG bytes encoded from the frame's YUV planes; None when the frame must go through RGB.

    The planes are converted to full range (``yuvj420p``, shrunk to ``max_side`` by area averaging as
    :func:`upright_rgb` does) and rotated upright; libjpeg-turbo then encodes them with the quality's
    standard tables and 4:2:0 sampling, as Pillow does from RGB.
    """
    width, height = scaled_size(frame.width, frame.height, max_side)
    if (
        frame.format.name not in _PLANAR_FORMATS
        or int(frame.colorspace) not in _BT601_COLORSPACES
        or width % 2
        or height % 2
    ):
        return None
    # One thread: this already runs on a JPEG worker beside the decoder.
    full = frame.reformat(
        width=width,
        height=height,
        format="yuvj420p",
        dst_colorspace="ITU601",
        interpolation="AREA",
        threads=1,
    )
    planes = [
        np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)[
            :, : plane.width
        ]
        for plane in full.planes
    ]
    k = rotation // 90
    y, u, v = (np.ascontiguousarray(np.rot90(p, k=k) if k else p) for p in planes)
    return bytes(simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality, fastdct=False))


def frame_jpeg(frame: av.VideoFrame, *, quality: int, rotation: int, max_side: int | None) -> bytes:
    """The frame as an upright JPEG: from its YUV planes where it can (:func:`planar_jpeg`), else RGB."""
    data = planar_jpeg(frame, quality=quality, rotation=rotation, max_side=max_side)
    if data is not None:
        return data
    return encode_jpeg(upright_rgb(frame, rotation=rotation, max_side=max_side), quality=quality)


def thumbnail(frame: av.VideoFrame) -> NDArray[np.float32]:
    """A tiny grey version of the frame, for comparing frames (scene cuts) and clips (duplicates)."""
    small = frame.reformat(width=THUMB_SIZE[0], height=THUMB_SIZE[1], format="gray", interpolation="AREA")
    return np.asarray(small.to_ndarray(), dtype=np.float32)


class JpegWriter:
    """Encodes frames to JPEG and writes them to the store on a small thread pool."""

    def __init__(self, store: ObjectStore, *, quality: int, max_side: int | None, workers: int) -> None:
        self.store, self.quality, self.max_side = store, quality, max_side
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest-jpeg")
        self._slots = threading.BoundedSemaphore(2 * max(1, workers))

    def submit(self, key: str, frame: av.VideoFrame, *, rotation: int) -> Future[None]:
        """Queue one frame; blocks while the queue is full. The future fails if the write failed."""
        self._slots.acquire()
        try:
            future = self._pool.submit(self._write, key, frame, rotation)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _write(self, key: str, frame: av.VideoFrame, rotation: int) -> None:
        data = frame_jpeg(frame, quality=self.quality, rotation=rotation, max_side=self.max_side)
        self.store.write_bytes(key, data)

    def close(self) -> None:
        """Wait for queued frames and stop the threads."""
        self._pool.shutdown(wait=True)
