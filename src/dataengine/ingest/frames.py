"""Sampled frames → upright JPEGs in the store, on worker threads beside the decoder.

JPEG encoding and the store's writes release the GIL, so they run on the second core while FFmpeg's
own threads decode. At most ``2 * workers`` frames wait at a time: memory stays bounded however fast
the decoder is.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import av
import numpy as np
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
        rgb = upright_rgb(frame, rotation=rotation, max_side=self.max_side)
        self.store.write_bytes(key, encode_jpeg(rgb, quality=self.quality))

    def close(self) -> None:
        """Wait for queued frames and stop the threads."""
        self._pool.shutdown(wait=True)
