"""The mmdetection backend: our checkpoint round trip and batched inference (needs `make mmdet`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataengine.errors import ModelError
from dataengine.storage import ObjectStore
from dataengine.vision import backend_of, load_any_detector, load_checkpoint, load_detector
from dataengine.vision.mmdet_backend import (
    MMDetDetector,
    build_mmdet_model,
    mmdet_available,
    save_mmdet_checkpoint,
    tiny_mmdet_config,
)

pytestmark = pytest.mark.skipif(
    not mmdet_available(), reason="mmcv.ops does not import: run `make mmdet` to build and install it"
)
CLASSES = ["person", "bed", "wheelchair"]


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    images[1][20:80, 30:70] = 250
    return images


def test_an_mmdet_model_round_trips_through_our_checkpoint(store: ObjectStore) -> None:
    torch.manual_seed(0)
    config = tiny_mmdet_config(num_classes=len(CLASSES), width=160, height=120)
    model = build_mmdet_model(config, device=torch.device("cpu"))
    save_mmdet_checkpoint(store, "mm-1", model=model, mmdet_config=config, classes=CLASSES)
    saved, _ = load_checkpoint(store, "mm-1")
    assert (backend_of(saved), saved["arch"], saved["classes"]) == ("mmdet", "RetinaNet", CLASSES)

    loaded = load_any_detector(store, "mm-1", device="cpu")

    assert isinstance(loaded, MMDetDetector)
    assert (loaded.model_id, loaded.classes) == ("mm-1", CLASSES)
    original = MMDetDetector(model, classes=CLASSES, model_id="original", device=torch.device("cpu"))
    images = frames()
    want, got = original.predict(images, batch_size=2), loaded.predict(images, batch_size=2)
    assert len(got) == 3
    for a, b in zip(want, got, strict=True):
        assert np.allclose(a.boxes_xyxy, b.boxes_xyxy, atol=1e-3)
        assert np.allclose(a.scores, b.scores, atol=1e-5)
        assert (a.labels == b.labels).all()
    some = got[0]
    assert len(some) > 0
    assert some.boxes_xyxy.shape == (len(some), 4)
    # Boxes come back in the frame's pixels (mmdet rescales from its 160x120 input), labels index classes.
    assert (some.boxes_xyxy[:, 2] <= 160 + 1e-3).all()
    assert (some.boxes_xyxy[:, 3] <= 120 + 1e-3).all()
    assert set(some.labels.tolist()) <= {0, 1, 2}
    threshold = float(np.median(some.scores))
    assert (loaded.predict(images[:1], score_threshold=threshold)[0].scores >= threshold).all()
    assert loaded.predict_batch([]) == []


def test_torchvision_only_loading_refuses_an_mmdet_checkpoint(store: ObjectStore) -> None:
    config = tiny_mmdet_config(num_classes=len(CLASSES))
    model = build_mmdet_model(config, device=torch.device("cpu"))
    save_mmdet_checkpoint(store, "mm-2", model=model, mmdet_config=config, classes=CLASSES)
    with pytest.raises(ModelError, match="mm-2 is a mmdet model"):
        load_detector(store, "mm-2")
