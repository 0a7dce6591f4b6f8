"""Warm start from an imported model whose labels are not ours: transfer learning on a pre-trained model.

Every tensor whose shape fits is copied (backbone, FPN, RPN, box head). The class-dependent rows of a
Faster R-CNN box predictor are copied per class through the model's label map, so our ``person`` starts
as the COCO model's ``person``; a class the map does not name starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dataengine.vision.checkpoints import source_classes
from dataengine.vision.class_map import LabelMap

_CLS = "roi_heads.box_predictor.cls_score"
_BOX = "roi_heads.box_predictor.bbox_pred"


@dataclass(frozen=True)
class TransferReport:
    """How much of the source model went into the new one."""

    copied: int
    skipped: list[str]
    classes_from_source: dict[str, str]

    def summary(self) -> str:
        """One line for the training log."""
        mapped = ", ".join(f"{ours}<-{theirs}" for ours, theirs in self.classes_from_source.items())
        return (
            f"warm start: {self.copied} tensor(s) copied, {len(self.skipped)} left fresh; "
            f"class rows from the source: {mapped or 'none'}"
        )


def _rows(ours: int, theirs: int, width: int) -> tuple[slice, slice]:
    return slice(ours * width, (ours + 1) * width), slice(theirs * width, (theirs + 1) * width)


def transfer_weights(model: nn.Module, config: dict[str, Any], state_dict: dict[str, Any]) -> TransferReport:
    """Load ``state_dict`` (of the imported model ``config`` describes) into ``model`` as far as it fits."""
    target = model.state_dict()
    label_map = LabelMap.from_config(
        config["label_map"], n_source=len(source_classes(config)), classes=config["classes"]
    )
    copied, skipped = 0, []
    loaded: dict[str, torch.Tensor] = {}
    for key, tensor in target.items():
        source = state_dict.get(key)
        if source is not None and source.shape == tensor.shape:
            loaded[key] = source
            copied += 1
        elif source is not None and key.startswith((_CLS, _BOX)):
            loaded[key] = _predictor_rows(key, tensor.clone(), source, label_map)
            copied += 1
        else:
            skipped.append(key)
    model.load_state_dict({**target, **loaded})
    names = source_classes(config)
    from_source = {label_map.classes[k]: names[i] for i, k in enumerate(label_map.lookup) if k >= 0}
    return TransferReport(copied, skipped, from_source)


def _predictor_rows(key: str, fresh: torch.Tensor, source: torch.Tensor, label_map: LabelMap) -> torch.Tensor:
    """The box predictor's rows for our classes, taken from the mapped source classes (background too)."""
    width = 4 if key.startswith(_BOX) else 1
    # torchvision's row 0 is the background and class index i is row i + 1, in both models.
    pairs = [(0, 0)] + [(k + 1, i + 1) for i, k in enumerate(label_map.lookup) if k >= 0]
    for ours, theirs in pairs:
        mine, their = _rows(ours, theirs, width)
        if their.stop <= source.shape[0]:
            fresh[mine] = source[their]
    return fresh
