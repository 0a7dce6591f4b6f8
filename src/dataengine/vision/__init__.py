"""Detectors shared by triggers, autolabel and training: registry, checkpoints, batched inference."""

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
