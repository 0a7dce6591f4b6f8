"""The per-clip training Dataset: one sample per labelled frame, labels read from each clip's own file.

``__init__`` reads only the manifest, into a few flat numpy arrays (``columns``): no per-clip Python
objects, so every rank starts fast and forked DataLoader workers keep sharing its pages. The arrays come
from the manifest's columnar index when it matches the manifest's bytes (read block by block on a local
store), else from parsing it. The split's samples are views on those arrays (``columns.SplitSamples``):
nothing is built per clip or per sample, so start-up and memory do not grow with the data. The index is
checked where it is read: a sample whose lookup meets damage raises ``IndexDamagedError`` naming it.
``__getitem__`` loads the clip's annotation file on demand, checks its sha256 against the manifest and
keeps the last few clips in a small per-worker cache.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from dataengine.clips import clip_prefix, dct_factor, decode_jpeg_at, reduced_size
from dataengine.errors import FormatError
from dataengine.formats import ClipAnnotations, sha256_hex
from dataengine.storage import ObjectStore
from dataengine.training.columns import read_manifest_columns

Target = dict[str, torch.Tensor]
Sample = tuple[torch.Tensor, Target]


@dataclass(frozen=True, slots=True)
class _FrameLabels:
    image_key: str
    width: int
    height: int
    boxes_xyxy: NDArray[np.float32]
    labels: NDArray[np.int64]


class ClipFrameDataset(Dataset[Sample]):
    """Labelled frames of one split of a dataset manifest, as torchvision detection samples.

    A sample is ``(image, target)``: ``image`` is a float tensor (3, H, W) in [0, 1], ``target`` holds
    ``boxes`` (float32 [N, 4], xyxy absolute pixels) and ``labels`` (int64 [N], class index + 1, since
    torchvision reserves 0 for the background). A frame without boxes is a negative with N = 0.
    """

    def __init__(
        self,
        store: ObjectStore,
        manifest: str,
        *,
        split: str | None,
        classes: Sequence[str],
        hflip_prob: float = 0.0,
        cache_clips: int = 8,
        as_uint8: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Index ``split`` (None: every split) of the manifest at ``manifest`` (a key or a URI).

        With ``as_uint8`` images stay ``uint8`` (3, H, W) in [0, 255]: a quarter of the bytes through the
        workers' queues, converted to float on the device (:func:`to_float_image`).

        ``input_size`` is the detector's ``(min_size, max_size)``: each JPEG is then decoded at the
        smallest 1/2, 1/4 or 1/8 of its size that the detector still shrinks (:func:`image_scale`),
        with its boxes scaled to match, instead of decoding every pixel for the detector to drop.
        """
        self.store = store
        self.input_size = input_size
        self._store_pid = os.getpid()
        self.as_uint8 = as_uint8
        self.classes = list(classes)
        self.hflip_prob = hflip_prob
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        self._columns = read_manifest_columns(store, manifest)
        self._samples = self._columns.samples(split)
        self._cache: OrderedDict[int, dict[int, _FrameLabels]] = OrderedDict()
        self._cache_clips = max(1, cache_clips)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def n_clips(self) -> int:
        """Number of clips in this split."""
        return self._samples.n_clips

    @property
    def index_nbytes(self) -> int:
        """Size of the manifest's arrays, every split (of a local index, on disk: none of it is held)."""
        return self._columns.nbytes

    def sample(self, index: int) -> tuple[str, int]:
        """``(clip_id, frame_index)`` of sample ``index``."""
        clip_pos, frame_index = self._samples.locate(index)
        return self._columns.clip_ids[clip_pos], frame_index

    def _reopen_store_after_fork(self) -> None:
        """Give a forked DataLoader worker its own client: s3fs clients refuse to be used across a fork."""
        if os.getpid() != self._store_pid:
            if not self.store.is_local:
                self.store = self.store.reopen()
            self._store_pid = os.getpid()

    def __getitem__(self, index: int) -> Sample:
        self._reopen_store_after_fork()
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)} frames")
        clip_pos, frame_index = self._samples.locate(index)
        labels = self._clip_labels(clip_pos).get(frame_index)
        if labels is None:
            raise FormatError(
                f"{self._columns.uris[clip_pos]}: frame {frame_index} is listed in the manifest, "
                "not in the file"
            )
        image = self._load_image(labels)
        boxes = torch.from_numpy(labels.boxes_xyxy * self._box_scale(labels))
        width = image.shape[-1]
        if self.hflip_prob > 0 and float(torch.rand(())) < self.hflip_prob:
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
        return image, {"boxes": boxes.reshape(-1, 4), "labels": torch.from_numpy(labels.labels.copy())}

    def image_scale(self, index: int) -> tuple[float, float]:
        """``(x, y)`` factors from sample ``index``'s frame pixels to its image's (1.0 at full size).

        Divide a prediction's box by them to get the frame's own pixels.
        """
        clip_pos, frame_index = self._samples.locate(index)
        labels = self._clip_labels(clip_pos)[frame_index]
        sx, sy = self._box_scale(labels)[:2]
        return float(sx), float(sy)

    def _factor(self, labels: _FrameLabels) -> int:
        if self.input_size is None:
            return 1
        return dct_factor(
            labels.width, labels.height, min_size=self.input_size[0], max_size=self.input_size[1]
        )

    def _box_scale(self, labels: _FrameLabels) -> NDArray[np.float32]:
        width, height = reduced_size(labels.width, labels.height, self._factor(labels))
        sx, sy = width / labels.width, height / labels.height
        return np.array([sx, sy, sx, sy], dtype=np.float32)

    def _load_image(self, labels: _FrameLabels) -> torch.Tensor:
        rgb = decode_jpeg_at(
            self.store.read_bytes(labels.image_key),
            source_name=self.store.uri(labels.image_key),
            full=(labels.width, labels.height),
            factor=self._factor(labels),
        )
        image = torch.from_numpy(rgb).permute(2, 0, 1)
        return image if self.as_uint8 else to_float_image(image)

    def _clip_labels(self, clip_pos: int) -> dict[int, _FrameLabels]:
        cached = self._cache.get(clip_pos)
        if cached is not None:
            self._cache.move_to_end(clip_pos)
            return cached
        labels = self._read_clip(clip_pos)
        self._cache[clip_pos] = labels
        if len(self._cache) > self._cache_clips:
            self._cache.popitem(last=False)
        return labels

    def _read_clip(self, clip_pos: int) -> dict[int, _FrameLabels]:
        """A clip's labels per frame, after checking the file is the one the manifest names."""
        uri, clip_id = self._columns.uris[clip_pos], self._columns.clip_ids[clip_pos]
        data = read_verified_bytes(self.store, uri, sha256=self._columns.sha256_hex(clip_pos))
        # These bytes hash to the ones build_dataset validated, so the schema check, ~95% of the cost of
        # reading a file and paid on almost every sample once the sampler shuffles, is not done again.
        try:
            frames = json.loads(data)["frames"]
            return {int(frame["index"]): self._frame_labels(uri, clip_id, frame) for frame in frames}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{uri}: not a clip annotation file ({type(exc).__name__}: {exc})") from exc

    def _frame_labels(self, uri: str, clip_id: str, frame: dict[str, Any]) -> _FrameLabels:
        boxes = frame["boxes"]
        unknown = sorted({box["label"] for box in boxes} - self._class_index.keys())
        if unknown:
            raise FormatError(f"{uri}: label {unknown[0]!r} is not one of the classes {self.classes}")
        return _FrameLabels(
            image_key=f"{clip_prefix(clip_id)}/{frame['image']}",
            width=int(frame["width"]),
            height=int(frame["height"]),
            boxes_xyxy=np.array([box["xyxy"] for box in boxes], dtype=np.float32).reshape(-1, 4),
            labels=np.array([self._class_index[box["label"]] + 1 for box in boxes], dtype=np.int64),
        )


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """A float image in [0, 1] from a ``uint8`` one; float images pass through."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image


def read_verified_bytes(store: ObjectStore, uri: str, *, sha256: str) -> bytes:
    """The bytes of the file at ``uri``, refused unless they hash to the ``sha256`` the manifest names."""
    data = store.read_bytes(store.key_of(uri))
    digest = sha256_hex(data)
    if digest != sha256:
        raise FormatError(
            f"{uri}: sha256 {digest} does not match the manifest ({sha256}); the file changed after the "
            "dataset was built: rebuild the dataset with `dataengine dataset build`"
        )
    return data


def load_verified_annotations(store: ObjectStore, uri: str, *, sha256: str) -> ClipAnnotations:
    """The annotation file at ``uri``, validated, refused unless its bytes hash to ``sha256``."""
    data = read_verified_bytes(store, uri, sha256=sha256)
    return ClipAnnotations.from_json_bytes(data, source_name=uri)


def collate(batch: Sequence[Sample]) -> tuple[list[torch.Tensor], list[Target]]:
    """Detection batches are lists: images may differ in size and frames in box count."""
    return [image for image, _ in batch], [target for _, target in batch]
