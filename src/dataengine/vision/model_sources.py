"""Checking a model a team brings and turning it into what our checkpoint stores, family by family.

Each ``prepare_*`` reads the user's files, checks them (architecture, class count, class map) and returns
a :class:`PreparedModel`: the checkpoint config, the weights and any files to keep beside them. Nothing
is written here, so a refused model leaves no trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dataengine.errors import ModelError
from dataengine.vision.class_map import LabelMap, build_label_map
from dataengine.vision.detectors import known_archs
from dataengine.vision.hog import HOG_LABELS
from dataengine.vision.open_vocab import OPEN_VOCAB_ARCHS
from dataengine.vision.torchvision_import import (
    build_and_load,
    class_count,
    default_sizes,
    read_state_dict,
    source_label_names,
)

HOG_ARCH = "opencv_hog"
MMDET_ARCH = "mmdet"


@dataclass(frozen=True)
class PreparedModel:
    """A checked model, ready to be stored: ``config`` goes into ``config.json`` and ``model.pt``."""

    backend: str
    arch: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Files kept beside the checkpoint (a transformers folder), by name.
    files: dict[str, Path] = field(default_factory=dict)


def import_archs() -> list[str]:
    """Every ``--arch`` that ``dataengine model import`` accepts."""
    return [*known_archs(), *OPEN_VOCAB_ARCHS, HOG_ARCH, MMDET_ARCH]


def _map_config(label_map: LabelMap | None, source: Sequence[str]) -> dict[str, Any]:
    if label_map is None:
        return {}
    return {"source_classes": list(source), "label_map": label_map.to_config()}


def prepare_torchvision(
    weights: Path,
    *,
    arch: str,
    classes: Sequence[str],
    class_map: Sequence[tuple[str, str]],
    sizes: tuple[int, int] | None,
    fallback_sizes: tuple[int, int],
) -> PreparedModel:
    """A torchvision ``state_dict`` file of ``arch``, with as many classes as the file has."""
    what = str(weights)
    state_dict = read_state_dict(weights.read_bytes(), what=what)
    n_source = class_count(arch, state_dict, what=what)
    sizes = sizes or default_sizes(arch) or fallback_sizes
    build_and_load(arch, state_dict, num_classes=n_source, sizes=sizes, what=what)
    names = source_label_names(arch, n_source)
    label_map: LabelMap | None = None
    if class_map:
        # torchvision's label ids count the background as 0, so id i is the model's class index i - 1.
        label_map = build_label_map(class_map, source_names=names, classes=classes, id_offset=1, what=what)
    elif n_source != len(classes):
        raise ModelError(
            f"{what}: the {arch} weights detect {n_source} classes, ours are {len(classes)} "
            f"({', '.join(classes)}); say which of its labels are which of ours with --class-map "
            "(e.g. --class-map 1=person for COCO's person), or give its own classes with --classes"
        )
    source = [name or f"label {i + 1}" for i, name in enumerate(names)]
    config = {
        "arch": arch,
        "classes": list(classes),
        "min_size": sizes[0],
        "max_size": sizes[1],
        **_map_config(label_map, source),
    }
    return PreparedModel("torchvision", arch, config, state_dict=state_dict)


def prepare_open_vocab(
    folder: Path, *, arch: str, classes: Sequence[str], class_map: Sequence[tuple[str, str]]
) -> PreparedModel:
    """An OWLv2 or Grounding DINO folder; the prompts are our class names, or the class map's sources."""
    from dataengine.vision.open_vocab import load_open_vocab

    if not folder.is_dir():
        raise ModelError(f"{folder}: an {arch} model is a folder written by save_pretrained, not a file")
    load_open_vocab(folder, arch=arch, device=torch.device("cpu"))  # refuses what does not load
    prompts = [source for source, _ in class_map] if class_map else list(classes)
    label_map = build_label_map(
        class_map or [(c, c) for c in classes], source_names=prompts, classes=classes, what=str(folder)
    )
    files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}
    config = {"arch": arch, "classes": list(classes), **_map_config(label_map, prompts)}
    return PreparedModel("transformers", arch, config, files=files)


def prepare_hog(
    *, classes: Sequence[str], class_map: Sequence[tuple[str, str]], upscale: float = 1.0
) -> PreparedModel:
    """OpenCV's HOG people detector; its one label, ``person``, must map to one of our classes."""
    pairs = list(class_map) or [("person", "person")]
    what = "the HOG people detector"
    label_map = build_label_map(pairs, source_names=HOG_LABELS, classes=classes, what=what)
    config = {"arch": HOG_ARCH, "classes": list(classes), "params": {"upscale": upscale, "win_stride": 8}}
    config.update(_map_config(label_map, HOG_LABELS))
    return PreparedModel("opencv_hog", HOG_ARCH, config)


def prepare_mmdet(
    weights: Path | None,
    *,
    mmdet_config: Path | None,
    classes: Sequence[str],
    class_map: Sequence[tuple[str, str]],
) -> PreparedModel:
    """An mmdetection config plus checkpoint, built and loaded here (needs `make mmdet`)."""
    from dataengine.vision.mmdet_backend import MMDET_MISSING, build_mmdet_model, mmdet_available

    if mmdet_config is None:
        raise ModelError("an mmdet model needs its config: --config CONFIG.py, beside the checkpoint file")
    if not mmdet_config.is_file():
        raise ModelError(f"--config {mmdet_config}: no such file")
    if weights is None:
        raise ModelError(
            f"--config {mmdet_config}: no checkpoint given; an mmdet model is a config plus its checkpoint "
            "file (WEIGHTS): without weights it would detect nothing"
        )
    if not mmdet_available():
        raise ModelError(f"cannot import {weights}: {MMDET_MISSING}")
    from mmengine.config import Config

    # From the file, so that its `_base_` configs are found beside it; stored as one flat text.
    text = str(Config.fromfile(str(mmdet_config)).pretty_text)
    state_dict = read_state_dict(weights.read_bytes(), what=str(weights))
    model = build_mmdet_model(text, device=torch.device("cpu"))
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ModelError(f"{weights} does not fit the mmdet config {mmdet_config}: {exc}") from exc
    head = getattr(getattr(model, "bbox_head", None), "num_classes", None)
    n_source = int(head) if head is not None else len(classes)
    names: list[str | None] = [None] * n_source
    label_map: LabelMap | None = None
    if class_map:
        label_map = build_label_map(class_map, source_names=names, classes=classes, what=str(weights))
    elif n_source != len(classes):
        raise ModelError(f"{weights}: the mmdet model detects {n_source} classes; map them with --class-map")
    source = [f"label {i}" for i in range(n_source)]
    config = {
        "arch": MMDET_ARCH,
        "classes": list(classes),
        "mmdet_config": text,
        **_map_config(label_map, source),
    }
    return PreparedModel("mmdet", MMDET_ARCH, config, state_dict=state_dict)
