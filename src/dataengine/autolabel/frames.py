"""Streaming clips' sampled frames from storage, decoded ahead of the detector.

Either DataLoader worker processes read and decode JPEGs (each worker takes whole clips: clip ``i``
goes to worker ``i % n``, so a clip's frames arrive in order), or, with no workers, one background
thread of the calling process decodes the next batches while the detectors run (:func:`prefetched`).
Memory holds at most ``workers x prefetch`` (or ``prefetch + 1``) batches of decoded frames ahead of
the consumer, whatever the clips' lengths.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
from numpy.typing import NDArray
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dataengine import clips
from dataengine.autolabel.prefetch import prefetched
from dataengine.errors import FormatError, StorageError
from dataengine.storage import ObjectStore


@dataclass(frozen=True, slots=True)
class FrameItem:
    """One sampled frame of a clip, or the reason the clip cannot be read (``error`` names the file).

    ``position`` counts the clip's sampled frames from 0 and ``n_frames`` is how many it has, so the
    consumer knows when a clip is complete. An error item ends its clip: no frames of it follow.
    """

    clip_id: str
    position: int
    n_frames: int
    index: int = -1
    rgb: NDArray[np.uint8] | None = None
    error_input: str | None = None
    error: str | None = None


class ClipFrameStream(IterableDataset[FrameItem]):
    """The sampled frames of ``clip_ids``, clip after clip, shared out by clip among DataLoader workers."""

    def __init__(self, store: ObjectStore, clip_ids: Sequence[str]) -> None:
        self.store = store
        self.clip_ids = list(clip_ids)

    def __iter__(self) -> Iterator[FrameItem]:
        info = get_worker_info()
        mine = self.clip_ids if info is None else self.clip_ids[info.id :: info.num_workers]
        for clip_id in mine:
            yield from self._frames(clip_id)

    def _frames(self, clip_id: str) -> Iterator[FrameItem]:
        meta_uri = self.store.uri(clips.meta_key(clip_id))
        try:
            meta = clips.read_meta(self.store, clip_id)
        except (StorageError, FormatError) as exc:
            yield FrameItem(clip_id, 0, 0, error_input=meta_uri, error=f"meta.json is unreadable: {exc}")
            return
        if not meta.sampled:
            yield FrameItem(clip_id, 0, 0, error_input=meta_uri, error=f"{meta_uri} lists no sampled frames")
            return
        for position, index in enumerate(meta.sampled):
            try:
                rgb = clips.read_frame(self.store, clip_id, index)
            except (StorageError, FormatError) as exc:
                uri = self.store.uri(clips.frame_key(clip_id, index))
                yield FrameItem(
                    clip_id,
                    position,
                    len(meta.sampled),
                    index,
                    error_input=uri,
                    error=f"frame {index} is unreadable: {exc}",
                )
                return
            yield FrameItem(clip_id, position, len(meta.sampled), index, rgb)


def _as_list(items: list[FrameItem]) -> list[FrameItem]:
    return items


def batched(items: Iterable[FrameItem], batch_size: int) -> Iterator[list[FrameItem]]:
    """Consecutive lists of ``batch_size`` items (the last may be shorter), as the DataLoader batches."""
    iterator = iter(items)
    while batch := list(islice(iterator, batch_size)):
        yield batch


def stream_frames(
    store: ObjectStore, clip_ids: Sequence[str], *, batch_size: int, workers: int, prefetch: int = 2
) -> Generator[list[FrameItem], None, None]:
    """Batches of :class:`FrameItem` of ``clip_ids``.

    ``workers`` > 0: DataLoader worker processes, each ``prefetch`` batches ahead. ``workers=0``: a
    thread of the calling process decodes up to ``prefetch`` batches ahead; ``prefetch=0`` as well
    decodes each batch when it is asked for (nothing overlaps). Close the iterator when stopping
    early, so the thread stops and is joined.
    """
    stream = ClipFrameStream(store, clip_ids)
    if workers == 0 or not clip_ids:
        if prefetch == 0 or not clip_ids:
            yield from batched(stream, batch_size)
        else:
            yield from prefetched(batched(stream, batch_size), prefetch, name="autolabel-decode")
        return
    loader: DataLoader[FrameItem] = DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=min(workers, len(clip_ids)),
        collate_fn=_as_list,
        prefetch_factor=prefetch or None,
    )
    yield from loader
