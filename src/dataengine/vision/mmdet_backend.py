"""The mmdetection backend: any mmdet 3.x model config, with weights from our own checkpoint.

mmdet needs mmcv's compiled ops, which are built once from source with ``make mmdet`` (docs/autolabel.md,
"mmdetection"). Nothing is downloaded: the model is built with ``checkpoint=None`` and the backbone's
``init_cfg`` removed, then our state dict is loaded into it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from dataengine.errors import ModelError
from dataengine.storage import ObjectStore
from dataengine.vision.inference import Detections, autocast, predict_in_batches
from dataengine.vision.layout import CHECKPOINT_FORMAT, write_checkpoint

MMDET_MISSING = (
    "the mmdet backend needs mmdetection with mmcv's compiled ops; run `make mmdet` "
    "(it builds mmcv 2.1.0 once, about 30 minutes on 2 cores, and installs dataengine[mmdet])"
)


def mmdet_available() -> bool:
    """Whether mmdet and mmcv's compiled ops import here."""
    try:
        import mmcv.ops  # noqa: F401
        import mmdet  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _require_mmdet() -> None:
    if not mmdet_available():
        raise ModelError(MMDET_MISSING)


def _config(mmdet_config: Mapping[str, Any] | str) -> Any:
    """An mmengine ``Config`` from a dict or the text of an mmdet ``.py`` config."""
    from mmengine.config import Config

    if isinstance(mmdet_config, str):
        return Config.fromstring(mmdet_config, ".py")
    return Config(copy.deepcopy(dict(mmdet_config)))


def config_text(mmdet_config: Mapping[str, Any] | str) -> str:
    """The config as ``.py`` text: unlike JSON it keeps tuples, which some mmcv transforms insist on."""
    _require_mmdet()
    return mmdet_config if isinstance(mmdet_config, str) else str(_config(mmdet_config).pretty_text)


def build_mmdet_model(mmdet_config: Mapping[str, Any] | str, *, device: torch.device) -> nn.Module:
    """An mmdet model from a config (a dict, or the text of an mmdet ``.py`` config), from random weights."""
    _require_mmdet()
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules

    register_all_modules()
    config = _config(mmdet_config)
    backbone = config.model.get("backbone")
    if backbone is not None:
        # A pretrained backbone would be downloaded: the weights come from our checkpoint instead.
        backbone["init_cfg"] = None
    # A palette given here keeps init_detector from building the config's dataset just to read one.
    model: nn.Module = init_detector(config, checkpoint=None, device=str(device), palette="random")
    return model


def save_mmdet_checkpoint(
    store: ObjectStore,
    model_id: str,
    *,
    model: nn.Module,
    mmdet_config: Mapping[str, Any] | str,
    classes: Sequence[str],
    train_args: dict[str, Any] | None = None,
) -> str:
    """Write an mmdet model as our checkpoint (weights plus the config's text); returns the weights URI."""
    text = config_text(mmdet_config)
    config = {
        "format": CHECKPOINT_FORMAT,
        "backend": "mmdet",
        "model_id": model_id,
        "arch": str(_config(text).model.get("type", "mmdet")),
        "classes": list(classes),
        "mmdet_config": text,
        "train_args": train_args or {},
    }
    return write_checkpoint(store, model_id, config, model)


def load_mmdet_detector(
    config: dict[str, Any], state_dict: dict[str, Any], *, model_id: str, device: torch.device
) -> MMDetDetector:
    """An :class:`MMDetDetector` from a checkpoint's ``(config, state_dict)``."""
    if not isinstance(config.get("mmdet_config"), str | Mapping):
        raise ModelError(f"model {model_id}: an mmdet checkpoint needs its 'mmdet_config'")
    model = build_mmdet_model(config["mmdet_config"], device=device)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ModelError(f"model {model_id}: weights do not fit its mmdet config: {exc}") from exc
    classes = config.get("source_classes") or config["classes"]
    return MMDetDetector(model, classes=classes, model_id=model_id, device=device)


class MMDetDetector:
    """An mmdet model behind the :class:`~dataengine.vision.inference.FrameDetector` interface."""

    def __init__(
        self, model: nn.Module, *, classes: Sequence[str], model_id: str, device: torch.device
    ) -> None:
        _require_mmdet()
        from mmcv.transforms import Compose

        self.model = model.to(device).eval()
        self.classes = list(classes)
        self.model_id = model_id
        self.device = device
        cfg: Any = getattr(model, "cfg")  # noqa: B009  # init_detector attaches the config
        steps = copy.deepcopy(list(cfg.test_dataloader.dataset.pipeline))
        # Frames arrive as arrays, not files: the first step (LoadImageFromFile) takes them as they are.
        steps[0] = {"type": "mmdet.LoadImageFromNDArray"}
        self._pipeline = Compose(steps)

    def __repr__(self) -> str:
        return f"MMDetDetector({self.model_id!r}, classes={self.classes}, device={self.device})"

    @torch.inference_mode()
    def predict_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detections of one batch of RGB frames in one ``test_step``; boxes in frame pixels."""
        from mmengine.dataset import pseudo_collate

        if not frames:
            return []
        # mmdet's pipelines take BGR arrays (OpenCV's order); its data preprocessor flips them back.
        items = [
            self._pipeline({"img": np.ascontiguousarray(frame[..., ::-1]), "img_id": i})
            for i, frame in enumerate(frames)
        ]
        with autocast(self.device):
            results = self.model.test_step(pseudo_collate(items))  # type: ignore[operator]
        return [self._detections(result.pred_instances) for result in results]

    @staticmethod
    def _detections(instances: Any) -> Detections:
        return Detections(
            boxes_xyxy=instances.bboxes.float().cpu().numpy().astype(np.float32).reshape(-1, 4),
            scores=instances.scores.float().cpu().numpy().astype(np.float32),
            labels=instances.labels.cpu().numpy().astype(np.int64),
        )

    def predict(
        self, frames: Sequence[NDArray[np.uint8]], *, batch_size: int = 8, score_threshold: float = 0.0
    ) -> list[Detections]:
        """Detections for each RGB frame, in order; labels index :attr:`classes`."""
        return predict_in_batches(self, frames, batch_size=batch_size, score_threshold=score_threshold)


def tiny_mmdet_config(*, num_classes: int, width: int = 256, height: int = 192) -> dict[str, Any]:
    """A small RetinaNet (ResNet-18 at a quarter width, 3-level FPN) that runs on a CPU in tests and demos.

    Any mmdet config works with this backend; this one exists so that nothing needs downloading.
    """
    return {
        "default_scope": "mmdet",
        "model": {
            "type": "RetinaNet",
            "data_preprocessor": {
                "type": "DetDataPreprocessor",
                "mean": [0.0, 0.0, 0.0],
                "std": [255.0, 255.0, 255.0],
                "bgr_to_rgb": True,
                "pad_size_divisor": 32,
            },
            "backbone": {
                "type": "ResNet",
                "depth": 18,
                "base_channels": 16,
                "num_stages": 4,
                "out_indices": [1, 2, 3],
                "frozen_stages": -1,
                "norm_cfg": {"type": "BN", "requires_grad": True},
                "norm_eval": False,
                "style": "pytorch",
                "init_cfg": None,
            },
            "neck": {
                "type": "FPN",
                "in_channels": [32, 64, 128],
                "out_channels": 32,
                "start_level": 0,
                "add_extra_convs": "on_input",
                "num_outs": 3,
            },
            "bbox_head": {
                "type": "RetinaHead",
                "num_classes": num_classes,
                "in_channels": 32,
                "stacked_convs": 1,
                "feat_channels": 32,
                "anchor_generator": {
                    "type": "AnchorGenerator",
                    "octave_base_scale": 4,
                    "scales_per_octave": 2,
                    "ratios": [0.5, 1.0, 2.0],
                    "strides": [8, 16, 32],
                },
                "bbox_coder": {
                    "type": "DeltaXYWHBBoxCoder",
                    "target_means": [0.0, 0.0, 0.0, 0.0],
                    "target_stds": [1.0, 1.0, 1.0, 1.0],
                },
                "loss_cls": {
                    "type": "FocalLoss",
                    "use_sigmoid": True,
                    "gamma": 2.0,
                    "alpha": 0.25,
                    "loss_weight": 1.0,
                },
                "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
            },
            "train_cfg": {
                "assigner": {
                    "type": "MaxIoUAssigner",
                    "pos_iou_thr": 0.5,
                    "neg_iou_thr": 0.4,
                    "min_pos_iou": 0,
                    "ignore_iof_thr": -1,
                },
                "sampler": {"type": "PseudoSampler"},
                "allowed_border": -1,
                "pos_weight": -1,
                "debug": False,
            },
            "test_cfg": {
                "nms_pre": 200,
                "min_bbox_size": 0,
                "score_thr": 0.05,
                "nms": {"type": "nms", "iou_threshold": 0.5},
                "max_per_img": 50,
            },
        },
        "test_dataloader": {
            "dataset": {
                "pipeline": [
                    {"type": "LoadImageFromFile"},
                    {"type": "Resize", "scale": (width, height), "keep_ratio": True},
                    {
                        "type": "PackDetInputs",
                        "meta_keys": ["img_id", "ori_shape", "img_shape", "scale_factor"],
                    },
                ]
            }
        },
    }
