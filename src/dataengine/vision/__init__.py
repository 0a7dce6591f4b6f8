"""Detectors shared by triggers, autolabel and training: registry, checkpoints, batched inference."""

from dataengine.vision.checkpoints import (
    build_from_config,
    checkpoint_key,
    load_checkpoint,
    load_detector,
    model_prefix,
    save_checkpoint,
)
from dataengine.vision.detectors import DETECTOR_ARCHS, build_detector
from dataengine.vision.inference import Detections, Detector, pick_device, to_tensor

__all__ = [
    "DETECTOR_ARCHS",
    "Detections",
    "Detector",
    "build_detector",
    "build_from_config",
    "checkpoint_key",
    "load_checkpoint",
    "load_detector",
    "model_prefix",
    "pick_device",
    "save_checkpoint",
    "to_tensor",
]
