"""The detector registry: builders of torchvision detectors by architecture name.

Every builder starts from random weights: nothing is downloaded. Models come from our own training.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from dataengine.errors import ModelError

DetectorBuilder = Callable[..., nn.Module]


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """A small stride-8 CNN: trains from scratch on a CPU in minutes, for tests and the demo."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(3, width // 2, 2),
            _conv_block(width // 2, width, 2),
            _conv_block(width, width, 1),
            _conv_block(width, width * 2, 2),
            _conv_block(width * 2, width * 2, 1),
        )
        self.out_channels = width * 2

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict([("0", self.body(images))])


def build_tiny_fasterrcnn(*, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """A Faster R-CNN over :class:`TinyBackbone`; ``num_classes`` excludes the background."""
    backbone = TinyBackbone()
    anchors = AnchorGenerator(sizes=((16, 32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
    roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    representation = 256
    model: nn.Module = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes + 1),
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        box_detections_per_img=50,
    )
    return model


def build_fasterrcnn_mobilenet(*, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """torchvision's Faster R-CNN MobileNetV3-Large FPN, from random weights."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    model: nn.Module = fasterrcnn_mobilenet_v3_large_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,
        min_size=min_size,
        max_size=max_size,
    )
    return model


def build_fasterrcnn_resnet50(*, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """torchvision's Faster R-CNN ResNet-50 FPN, from random weights (a GPU-sized production model)."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    model: nn.Module = fasterrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,
        min_size=min_size,
        max_size=max_size,
    )
    return model


DETECTOR_ARCHS: dict[str, DetectorBuilder] = {
    "tiny_fasterrcnn": build_tiny_fasterrcnn,
    "fasterrcnn_mobilenet_v3_large_fpn": build_fasterrcnn_mobilenet,
    "fasterrcnn_resnet50_fpn": build_fasterrcnn_resnet50,
}


def build_detector(arch: str, *, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """A detector of architecture ``arch`` for ``num_classes`` object classes (background excluded)."""
    try:
        builder = DETECTOR_ARCHS[arch]
    except KeyError:
        raise ModelError(
            f"unknown detector architecture {arch!r}; choose one of {', '.join(sorted(DETECTOR_ARCHS))}"
        ) from None
    if num_classes < 1:
        raise ModelError(f"a detector needs at least one class, got num_classes={num_classes}")
    return builder(num_classes=num_classes, min_size=min_size, max_size=max_size)
