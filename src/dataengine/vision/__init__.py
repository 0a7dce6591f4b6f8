"""Detectors shared by triggers, autolabel and training: registry, checkpoints, batched inference, boxes.

The names below load on first use, so a reader of the torch-free parts (``vision.boxes``,
``vision.layout``: review, the UI) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataengine.lazy import lazy_attributes

if TYPE_CHECKING:
    from dataengine.vision.checkpoints import (
        BACKENDS,
        backend_of,
        build_from_config,
        load_any_detector,
        load_checkpoint,
        load_detector,
        save_checkpoint,
    )
    from dataengine.vision.detectors import DETECTOR_ARCHS, TORCHVISION_DETECTORS, build_detector, known_archs
    from dataengine.vision.inference import (
        Detections,
        Detector,
        FrameDetector,
        autocast,
        pick_device,
        predict_in_batches,
        to_tensor,
    )
    from dataengine.vision.layout import checkpoint_key, model_prefix

_HOMES = {
    "BACKENDS": "checkpoints",
    "backend_of": "checkpoints",
    "build_from_config": "checkpoints",
    "load_any_detector": "checkpoints",
    "load_checkpoint": "checkpoints",
    "load_detector": "checkpoints",
    "save_checkpoint": "checkpoints",
    "DETECTOR_ARCHS": "detectors",
    "TORCHVISION_DETECTORS": "detectors",
    "build_detector": "detectors",
    "known_archs": "detectors",
    "Detections": "inference",
    "Detector": "inference",
    "FrameDetector": "inference",
    "autocast": "inference",
    "pick_device": "inference",
    "predict_in_batches": "inference",
    "to_tensor": "inference",
    "checkpoint_key": "layout",
    "model_prefix": "layout",
}

__all__ = [
    "BACKENDS",
    "DETECTOR_ARCHS",
    "TORCHVISION_DETECTORS",
    "Detections",
    "Detector",
    "FrameDetector",
    "autocast",
    "backend_of",
    "build_detector",
    "build_from_config",
    "checkpoint_key",
    "known_archs",
    "load_any_detector",
    "load_checkpoint",
    "load_detector",
    "model_prefix",
    "pick_device",
    "predict_in_batches",
    "save_checkpoint",
    "to_tensor",
]


__getattr__ = lazy_attributes(__name__, _HOMES)
