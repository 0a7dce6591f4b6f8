"""Detector builders: the tiny detector's RoI pooling and training, torchvision builders by name, backends."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from dataengine.errors import ModelError
from dataengine.storage import ObjectStore
from dataengine.vision import (
    Detector,
    backend_of,
    build_detector,
    checkpoint_key,
    load_any_detector,
    load_checkpoint,
    save_checkpoint,
)
from dataengine.vision.detectors import GridRoIAlign


def test_grid_roi_align_equals_torchvision_roi_align() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 8, 32, 40)
    boxes = [
        torch.tensor([[10.0, 20.0, 100.0, 150.0], [0.0, 0.0, 319.0, 239.0], [50.3, 60.7, 52.1, 90.2]]),
        torch.tensor([[200.0, 100.0, 260.0, 200.0]]),
    ]
    expected = roi_align(features, boxes, 7, spatial_scale=1 / 8, sampling_ratio=1, aligned=True)
    pooled = GridRoIAlign("0", output_size=7)({"0": features}, boxes, [(240, 320), (240, 320)])
    assert pooled.shape == (4, 8, 7, 7)
    assert torch.allclose(pooled, expected, atol=1e-4)


def test_grid_roi_align_gradients_match() -> None:
    torch.manual_seed(1)
    features = torch.randn(1, 4, 16, 20, requires_grad=True)
    boxes = [torch.tensor([[8.0, 8.0, 90.0, 100.0], [30.0, 5.0, 150.0, 60.0]])]
    roi_align(
        features, boxes, 5, spatial_scale=1 / 8, sampling_ratio=1, aligned=True
    ).square().sum().backward()
    assert features.grad is not None
    expected = features.grad.clone()
    features.grad = None
    GridRoIAlign("0", output_size=5)({"0": features}, boxes, [(128, 160)]).square().sum().backward()
    grad = features.grad
    assert grad is not None
    assert torch.allclose(grad, expected, atol=1e-4)


def test_grid_roi_align_without_boxes_is_empty() -> None:
    features = torch.randn(2, 8, 32, 40)
    none = [torch.zeros((0, 4)), torch.zeros((0, 4))]
    assert GridRoIAlign()({"0": features}, none, [(240, 320)] * 2).shape == (0, 8, 7, 7)
    some = [torch.zeros((0, 4)), torch.tensor([[0.0, 0.0, 16.0, 16.0]])]
    assert GridRoIAlign()({"0": features}, some, [(240, 320)] * 2).shape == (1, 8, 7, 7)


def test_tiny_detector_trains_on_a_frame_without_boxes_and_predicts() -> None:
    torch.manual_seed(0)
    model = build_detector("tiny_fasterrcnn", num_classes=3, min_size=96, max_size=128)
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    targets = [
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},
        {"boxes": torch.tensor([[10.0, 20.0, 40.0, 80.0]]), "labels": torch.tensor([1])},
    ]
    model.train()
    losses = model(images, targets)
    total = torch.stack(list(losses.values())).sum()
    assert torch.isfinite(total)
    torch.autograd.backward(total)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.inference_mode():
        outputs = model(images)
    assert len(outputs) == 2
    assert outputs[0]["boxes"].shape[1] == 4
    assert len(outputs[0]["boxes"]) <= 50


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ModelError, match="unknown detector architecture 'nope'"):
        build_detector("nope", num_classes=3, min_size=96, max_size=128)


@pytest.mark.parametrize("arch", ["owlv2", "grounding_dino", "opencv_hog", "mmdet"])
def test_an_inference_only_architecture_is_refused_for_training_saying_so(arch: str) -> None:
    from dataengine.vision.detectors import INFERENCE_ONLY_ARCHS, known_archs
    from dataengine.vision.model_sources import import_archs

    assert set(INFERENCE_ONLY_ARCHS) == set(import_archs()) - set(known_archs())
    with pytest.raises(ModelError, match=f"{arch} is an inference-only pre-labeller"):
        build_detector(arch, num_classes=3, min_size=96, max_size=128)


@pytest.mark.parametrize(
    "arch",
    [
        "ssdlite320_mobilenet_v3_large",
        "retinanet_resnet50_fpn",
        "fcos_resnet50_fpn",
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
    ],
)
def test_torchvision_detection_builders_by_name_predict_in_frame_pixels(arch: str) -> None:
    torch.manual_seed(0)
    model = build_detector(arch, num_classes=3, min_size=64, max_size=96)
    detector = Detector(model, classes=["a", "b", "c"], model_id=arch, device=torch.device("cpu"))
    frame = np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    (detections,) = detector.predict_batch([frame])
    assert detections.boxes_xyxy.shape == (len(detections), 4)
    assert set(detections.labels.tolist()) <= {0, 1, 2}
    if len(detections):
        assert detections.boxes_xyxy[:, 2].max() <= 96 + 1e-3
        assert detections.boxes_xyxy[:, 3].max() <= 72 + 1e-3


def test_a_torchvision_checkpoint_round_trips_through_the_backend_registry(store: ObjectStore) -> None:
    torch.manual_seed(0)
    model = build_detector("ssdlite320_mobilenet_v3_large", num_classes=2, min_size=64, max_size=96)
    save_checkpoint(
        store,
        "ssd-1",
        model=model,
        arch="ssdlite320_mobilenet_v3_large",
        classes=["a", "b"],
        min_size=64,
        max_size=96,
    )
    config, _ = load_checkpoint(store, "ssd-1")
    assert backend_of(config) == "torchvision"
    loaded = load_any_detector(store, "ssd-1", device="cpu")
    frame = np.full((64, 96, 3), 128, dtype=np.uint8)
    want = Detector(model, classes=["a", "b"], model_id="x", device=torch.device("cpu")).predict([frame])
    got = loaded.predict([frame])
    assert loaded.classes == ["a", "b"]
    assert np.allclose(want[0].scores, got[0].scores)
    buffer = io.BytesIO()
    torch.save({"config": {**config, "backend": "caffe"}, "state_dict": {}}, buffer)
    store.write_bytes(checkpoint_key("odd"), buffer.getvalue())
    with pytest.raises(
        ModelError,
        match="model odd: unknown backend 'caffe'; known backends: mmdet, opencv_hog, torchvision, "
        "transformers",
    ):
        load_any_detector(store, "odd")


def test_unknown_torchvision_name_lists_the_choices() -> None:
    with pytest.raises(ModelError, match=r"choose one of .*retinanet_resnet50_fpn"):
        build_detector("torchvision:yolo", num_classes=3, min_size=64, max_size=96)
