"""The detector registry: builders of torchvision detectors by architecture name.

Every builder starts from random weights: nothing is downloaded. Models come from our own training.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812
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


class GridRoIAlign(nn.Module):
    """RoIAlign on one feature map with one bilinear sample per output bin, through ``grid_sample``.

    The numbers equal ``torchvision.ops.roi_align(..., aligned=True, sampling_ratio=1)``. The reason for
    it: on the CPU, torchvision's RoIAlign backward pass took 40% of a training step of the tiny detector,
    and ``grid_sample``'s backward is about 5x faster for the same samples.
    """

    def __init__(self, featmap_name: str = "0", output_size: int = 7) -> None:
        super().__init__()
        self.featmap_name = featmap_name
        self.output_size = output_size

    def forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Pooled features ``(sum of boxes, C, S, S)`` of ``boxes`` (xyxy, input pixels), image by image."""
        feature = features[self.featmap_name]
        scale = _feature_scale(feature, image_shapes)
        size = self.output_size
        pooled = []
        for i, image_boxes in enumerate(boxes):
            if image_boxes.shape[0] == 0:
                continue
            grid = _sampling_grid(image_boxes * scale, size, feature.shape[-2], feature.shape[-1])
            sampled = F.grid_sample(feature[i : i + 1], grid, mode="bilinear", align_corners=False)
            # (1, C, K * S, S) -> (K, C, S, S)
            pooled.append(sampled.reshape(feature.shape[1], -1, size, size).transpose(0, 1))
        if not pooled:
            return feature.new_zeros((0, feature.shape[1], size, size))
        return torch.cat(pooled)


def _feature_scale(feature: torch.Tensor, image_shapes: list[tuple[int, int]]) -> float:
    """Feature pixels per input pixel, a power of two, as torchvision's MultiScaleRoIAlign infers it."""
    widest = max(width for _, width in image_shapes)
    return float(2.0 ** round(math.log2(feature.shape[-1] / widest)))


def _sampling_grid(boxes: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """``grid_sample`` coordinates of the bin centres of ``boxes`` (xyxy, feature pixels): (1, K*S, S, 2)."""
    steps = (torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5) / size
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * steps  # (K, S)
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps
    # With align_corners=False, -1 and 1 are the outer edges of the map: pixel j covers [j, j + 1).
    gx = (2.0 * xs / width - 1.0)[:, None, :].expand(-1, size, -1)
    gy = (2.0 * ys / height - 1.0)[:, :, None].expand(-1, -1, size)
    return torch.stack([gx, gy], dim=-1).reshape(1, -1, size, 2)


def build_tiny_fasterrcnn(*, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """A Faster R-CNN over :class:`TinyBackbone`; ``num_classes`` excludes the background.

    Sized to train from scratch on two CPU cores in about a minute (docs/training.md, "Measured"):
    150 proposals and 128 sampled RoIs per image in training (torchvision's defaults are 2000 and 512),
    a 128-wide box head and :class:`GridRoIAlign` pooling.
    """
    backbone = TinyBackbone()
    anchors = AnchorGenerator(sizes=((16, 32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
    representation = 128
    detector = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=1),
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes + 1),
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=150,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=128,
        box_detections_per_img=50,
    )
    # FasterRCNN accepts only its own pooler type, so the faster one with the same numbers goes in after.
    detector.roi_heads.box_roi_pool = GridRoIAlign("0", output_size=7)
    model: nn.Module = detector
    return model


#: Our own architectures; torchvision's (fasterrcnn_mobilenet_v3_large_fpn, ...) are built by
#: :func:`build_torchvision_detector`.
DETECTOR_ARCHS: dict[str, DetectorBuilder] = {
    "tiny_fasterrcnn": build_tiny_fasterrcnn,
}

#: torchvision's box detection builders, usable by name (``"retinanet_resnet50_fpn"``) or with the
#: ``torchvision:`` prefix. Mask and keypoint R-CNN are left out: training them needs masks/keypoints.
TORCHVISION_DETECTORS = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
)
TORCHVISION_PREFIX = "torchvision:"
#: ``dataengine model import`` architectures that only pre-label: nothing here trains them.
INFERENCE_ONLY_ARCHS = ("owlv2", "grounding_dino", "opencv_hog", "mmdet")


def build_torchvision_detector(name: str, *, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """torchvision's detection builder ``name`` from random weights (nothing is downloaded).

    SSD models resize to their own fixed input (300 or 320 px), so ``min_size``/``max_size`` do not apply.
    """
    from torchvision.models import get_model

    if name not in TORCHVISION_DETECTORS:
        raise ModelError(
            f"unknown torchvision detector {name!r}; choose one of {', '.join(TORCHVISION_DETECTORS)}"
        )
    sizes = {} if name.startswith("ssd") else {"min_size": min_size, "max_size": max_size}
    model: nn.Module = get_model(
        name, weights=None, weights_backbone=None, num_classes=num_classes + 1, **sizes
    )
    return model


def known_archs() -> list[str]:
    """Every architecture name :func:`build_detector` accepts (prefixed names aside)."""
    return sorted(set(DETECTOR_ARCHS) | set(TORCHVISION_DETECTORS))


def build_detector(arch: str, *, num_classes: int, min_size: int, max_size: int) -> nn.Module:
    """A detector of architecture ``arch`` for ``num_classes`` object classes (background excluded).

    ``arch`` is one of our builders (:data:`DETECTOR_ARCHS`) or a torchvision detection builder, by name
    or as ``torchvision:<name>``.
    """
    if num_classes < 1:
        raise ModelError(f"a detector needs at least one class, got num_classes={num_classes}")
    name = arch.removeprefix(TORCHVISION_PREFIX)
    builder = DETECTOR_ARCHS.get(arch)
    if builder is not None:
        return builder(num_classes=num_classes, min_size=min_size, max_size=max_size)
    if name in TORCHVISION_DETECTORS:
        return build_torchvision_detector(name, num_classes=num_classes, min_size=min_size, max_size=max_size)
    if arch in INFERENCE_ONLY_ARCHS:
        raise ModelError(
            f"{arch} is an inference-only pre-labeller (`dataengine model import --arch {arch}`), not an "
            f"architecture to train; set DATAENGINE_DETECTOR_ARCH to one of {', '.join(known_archs())}"
        )
    raise ModelError(f"unknown detector architecture {arch!r}; choose one of {', '.join(known_archs())}")
