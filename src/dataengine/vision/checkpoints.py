"""Model checkpoints in object storage: ``models/{model_id}/model.pt``, ``config.json``, ``metrics.json``."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataengine.errors import ModelError, StorageError
from dataengine.storage import ObjectStore
from dataengine.vision.class_map import LabelMap
from dataengine.vision.detectors import build_detector
from dataengine.vision.inference import Detector, FrameDetector, pick_device
from dataengine.vision.layout import CHECKPOINT_FORMAT, checkpoint_key, model_prefix, write_checkpoint
from dataengine.vision.mapped import MappedDetector

#: The backend of checkpoints whose config names none (all written before backends existed).
DEFAULT_BACKEND = "torchvision"

#: Builds a ready detector from the store, a checkpoint's ``(config, state_dict)``, its model id and device.
BackendLoader = Callable[["Stored"], FrameDetector]


@dataclass(frozen=True)
class Stored:
    """A stored model as its backend's loader gets it: the store, its checkpoint and the device."""

    store: ObjectStore
    config: dict[str, Any]
    state_dict: dict[str, Any]
    model_id: str
    device: torch.device


def save_checkpoint(
    store: ObjectStore,
    model_id: str,
    *,
    model: nn.Module,
    arch: str,
    classes: list[str],
    min_size: int,
    max_size: int,
    train_args: dict[str, Any] | None = None,
) -> str:
    """Write weights and ``config.json`` (everything needed to rebuild the model); returns the weights URI."""
    config = {
        "format": CHECKPOINT_FORMAT,
        "backend": DEFAULT_BACKEND,
        "model_id": model_id,
        "arch": arch,
        "classes": list(classes),
        "min_size": min_size,
        "max_size": max_size,
        "train_args": train_args or {},
    }
    return write_checkpoint(store, model_id, config, model)


def load_checkpoint(store: ObjectStore, model_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(config, state_dict)`` of a stored model."""
    key = checkpoint_key(model_id)
    try:
        data = store.read_bytes(key)
    except StorageError as exc:
        raise ModelError(f"model {model_id}: cannot read its weights at {store.uri(key)}: {exc}") from exc
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{store.uri(key)} is not a readable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("config", {}).get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{store.uri(key)} is not a {CHECKPOINT_FORMAT} checkpoint")
    return payload["config"], payload["state_dict"]


def source_classes(config: dict[str, Any]) -> list[str]:
    """What the stored model's own labels are: its source classes when imported with a map, else ours."""
    return [str(c) for c in (config.get("source_classes") or config["classes"])]


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """An untrained model with the architecture a checkpoint config describes."""
    return build_detector(
        config["arch"],
        num_classes=len(source_classes(config)),
        min_size=int(config["min_size"]),
        max_size=int(config["max_size"]),
    )


def _torchvision_model(config: dict[str, Any], state_dict: dict[str, Any], model_id: str) -> nn.Module:
    model = build_from_config(config)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ModelError(f"model {model_id}: weights do not fit arch {config['arch']}: {exc}") from exc
    return model


def _load_torchvision(stored: Stored) -> FrameDetector:
    model = _torchvision_model(stored.config, stored.state_dict, stored.model_id)
    classes = source_classes(stored.config)
    return Detector(model, classes=classes, model_id=stored.model_id, device=stored.device)


def _load_mmdet(stored: Stored) -> FrameDetector:
    # Imported here: mmdet is an optional extra (`make mmdet`), and importing it is slow.
    from dataengine.vision.mmdet_backend import MMDET_MISSING, load_mmdet_detector, mmdet_available

    if not mmdet_available():
        # Evaluation, triggers and autolabel all load through here: none may skip the model silently.
        raise ModelError(
            f"model {stored.model_id} is an mmdet model, and this machine cannot run it: {MMDET_MISSING}"
        )
    return load_mmdet_detector(
        stored.config, stored.state_dict, model_id=stored.model_id, device=stored.device
    )


def _load_open_vocab(stored: Stored) -> FrameDetector:
    from dataengine.vision.open_vocab import OpenVocabDetector, load_open_vocab

    arch = str(stored.config["arch"])
    with model_folder(stored.store, stored.model_id, list(stored.config.get("files", []))) as folder:
        model, processor = load_open_vocab(folder, arch=arch, device=stored.device)
    prompts = source_classes(stored.config)
    return OpenVocabDetector(model, processor, arch=arch, prompts=prompts, model_id=stored.model_id)


def _load_hog(stored: Stored) -> FrameDetector:
    from dataengine.vision.hog import HogPeopleDetector

    params = stored.config.get("params", {})
    return HogPeopleDetector(
        model_id=stored.model_id,
        upscale=float(params.get("upscale", 1.0)),
        win_stride=int(params.get("win_stride", 8)),
    )


#: Detector backends by the ``backend`` name in a checkpoint's config.
BACKENDS: dict[str, BackendLoader] = {
    "torchvision": _load_torchvision,
    "mmdet": _load_mmdet,
    "transformers": _load_open_vocab,
    "opencv_hog": _load_hog,
}


def files_prefix(model_id: str) -> str:
    """The folder of the files a model is loaded from besides ``model.pt`` (a transformers folder)."""
    return f"{model_prefix(model_id)}/files"


@contextlib.contextmanager
def model_folder(store: ObjectStore, model_id: str, names: list[str]) -> Iterator[Path]:
    """A local folder with the model's stored files: the store's own on ``file://``, else a temp copy."""
    prefix = files_prefix(model_id)
    local = store.local_file(prefix)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="dataengine-model-") as tmp:
        for name in names:
            store.get_file(f"{prefix}/{name}", Path(tmp) / name)
        yield Path(tmp)


def backend_of(config: dict[str, Any]) -> str:
    """The backend a checkpoint config names (``torchvision`` when it names none)."""
    return str(config.get("backend", DEFAULT_BACKEND))


def _mapped(detector: FrameDetector, config: dict[str, Any], model_id: str) -> FrameDetector:
    """The detector seen through the config's label map (imported models), else as it is."""
    if not config.get("label_map"):
        return detector
    label_map = LabelMap.from_config(
        config["label_map"], n_source=len(source_classes(config)), classes=config["classes"]
    )
    return MappedDetector(detector, label_map, model_id=model_id)


def load_detector(store: ObjectStore, model_id: str, *, device: str = "auto") -> Detector:
    """A stored torchvision model of our own classes, ready for inference or training on ``device``."""
    config, state_dict = load_checkpoint(store, model_id)
    if backend_of(config) != DEFAULT_BACKEND or config.get("label_map"):
        kind = "an imported model with a class map" if config.get("label_map") else "a " + backend_of(config)
        raise ModelError(f"model {model_id} is {kind} model; only torchvision models of our classes fit here")
    model = _torchvision_model(config, state_dict, model_id)
    return Detector(model, classes=config["classes"], model_id=model_id, device=pick_device(device))


def load_any_detector(store: ObjectStore, model_id: str, *, device: str = "auto") -> FrameDetector:
    """A stored model of any registered backend (:data:`BACKENDS`), ready for inference on ``device``.

    Its labels index our classes: an imported model's own labels pass through its label map.
    """
    config, state_dict = load_checkpoint(store, model_id)
    backend = backend_of(config)
    loader = BACKENDS.get(backend)
    if loader is None:
        raise ModelError(
            f"model {model_id}: unknown backend {backend!r}; known backends: {', '.join(sorted(BACKENDS))}"
        )
    stored = Stored(store, config, state_dict, model_id, pick_device(device))
    return _mapped(loader(stored), config, model_id)
