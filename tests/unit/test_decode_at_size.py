"""Decoding JPEGs at the detector's input size (libjpeg DCT scaling): the same frames and boxes, scaled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dataengine import clips, formats
from dataengine.errors import FormatError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.storage import ObjectStore
from dataengine.synthetic import SyntheticScene
from dataengine.training.dataset import ClipFrameDataset
from dataengine.training.evaluation import to_frame_pixels
from dataengine.training.manifest import ManifestEntry

CLASSES = ["person", "bed", "wheelchair"]


def test_factor_keeps_the_image_at_least_as_large_as_the_detector_input() -> None:
    # 1280x720 for a detector of 192/256: it resizes to 256x144, so 1/4 (320x180) is the smallest above.
    assert clips.dct_factor(1280, 720, min_size=192, max_size=256) == 4
    assert clips.reduced_size(1280, 720, 4) == (320, 180)
    assert clips.dct_factor(1920, 1080, min_size=800, max_size=1333) == 1  # the detector enlarges
    assert clips.dct_factor(3840, 2160, min_size=800, max_size=1333) == 2
    assert clips.dct_factor(4000, 3000, min_size=192, max_size=256) == 8
    assert clips.reduced_size(1281, 721, 4) == (321, 181)  # libjpeg rounds up


def _store_clip(store: ObjectStore, size: tuple[int, int]) -> tuple[ClipFrameDataset, list[np.ndarray]]:
    scene = SyntheticScene(seed=7, width=size[0], height=size[1], n_frames=3)
    clip_id = clips.clip_id_for("0123456789abcdef", 0)
    frames, rgbs = [], []
    for index, (_, rgb, _) in enumerate(scene.frames()):
        store.write_bytes(clips.frame_key(clip_id, index), clips.encode_jpeg(rgb))
        rgbs.append(rgb)
        boxes = [Box("person", (17.0 + index, 33.5, 301.25, 400.0), origin="human")]
        frames.append(
            Frame(index=index, image=clips.frame_name(index), width=size[0], height=size[1], boxes=boxes)
        )
    saved = formats.save_annotations(
        store, ClipAnnotations(clip_id=clip_id, version=1, source="review", classes=CLASSES, frames=frames)
    )
    entry = ManifestEntry(clip_id, clip_id[:16], 1, saved.uri, saved.sha256, "train", (0, 1, 2), *size, 3)
    store.write_text("manifest.jsonl", entry.to_json_line() + "\n")
    full = ClipFrameDataset(store, "manifest.jsonl", split="train", classes=CLASSES, as_uint8=True)
    return full, rgbs


def test_reduced_decode_gives_the_same_frames_and_boxes_scaled(store: ObjectStore) -> None:
    full, _ = _store_clip(store, (640, 480))
    reduced = ClipFrameDataset(
        store, "manifest.jsonl", split="train", classes=CLASSES, as_uint8=True, input_size=(192, 256)
    )
    assert len(reduced) == len(full) == 3
    for i in range(3):
        big, big_target = full[i]
        small, small_target = reduced[i]
        assert tuple(small.shape) == (3, 240, 320)  # 1/2: the detector resizes 640x480 to 256x192
        assert reduced.image_scale(i) == (0.5, 0.5)
        assert full.image_scale(i) == (1.0, 1.0)
        assert torch.equal(small_target["labels"], big_target["labels"])
        assert torch.allclose(small_target["boxes"] * 2, big_target["boxes"])
        # The same picture: the full decode shrunk with an area filter differs by under 2 levels on average.
        shrunk = Image.fromarray(big.permute(1, 2, 0).numpy()).resize((320, 240), Image.Resampling.BOX)
        difference = np.abs(
            np.asarray(shrunk, dtype=np.float32) - small.permute(1, 2, 0).numpy().astype(np.float32)
        )
        assert float(difference.mean()) < 2.0
        # A prediction on the small image maps back to the frame's pixels.
        output = {"boxes": small_target["boxes"], "scores": torch.ones(1), "labels": small_target["labels"]}
        assert torch.allclose(to_frame_pixels(output, reduced.image_scale(i))["boxes"], big_target["boxes"])


def test_a_frame_of_another_size_is_refused(store: ObjectStore) -> None:
    _store_clip(store, (640, 480))
    key = clips.frame_key(clips.clip_id_for("0123456789abcdef", 0), 1)
    store.write_bytes(key, clips.encode_jpeg(np.zeros((100, 100, 3), dtype=np.uint8)))
    reduced = ClipFrameDataset(store, "manifest.jsonl", split="train", classes=CLASSES, input_size=(192, 256))
    with pytest.raises(FormatError, match="is 100x100, but its annotation says 640x480"):
        reduced[1]
