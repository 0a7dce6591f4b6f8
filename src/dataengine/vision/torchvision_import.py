"""Reading a torchvision ``state_dict`` file a team brings: which architecture, how many classes, which names.

Nothing is downloaded at run time, except on request: ``--weights DEFAULT`` fetches torchvision's own
weights into PyTorch's hub cache when the machine reaches the internet, and otherwise fails at once with
the cache path to fill.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataengine.errors import ModelError
from dataengine.vision.detectors import TORCHVISION_DETECTORS, TORCHVISION_PREFIX, build_detector

#: Keys under which training scripts commonly nest the state dict (torchvision's references use "model").
_NESTED_KEYS = ("model", "state_dict", "model_state_dict")
DOWNLOAD_TIMEOUT_SECONDS = 10.0
#: The number of labels of torchvision's COCO detectors (the background and 90 ids, some unused).
COCO_LABELS = 91


def read_state_dict(data: bytes, *, what: str) -> dict[str, torch.Tensor]:
    """The state dict in a ``.pth``/``.pt`` file's bytes, loaded safely (tensors only, no code)."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{what} is not a PyTorch weights file that loads safely: {exc}") from exc
    if isinstance(payload, dict):
        for key in _NESTED_KEYS:
            nested = payload.get(key)
            if isinstance(nested, dict) and _is_state_dict(nested):
                payload = nested
                break
    if not isinstance(payload, dict) or not _is_state_dict(payload):
        kind = type(payload).__name__
        raise ModelError(
            f"{what} is not a state dict (a mapping of parameter names to tensors) but a {kind}; "
            "save it with torch.save(model.state_dict(), PATH)"
        )
    return dict(payload)


def _is_state_dict(value: dict[Any, Any]) -> bool:
    return bool(value) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _build(arch: str, num_classes: int, sizes: tuple[int, int]) -> nn.Module:
    return build_detector(arch, num_classes=num_classes, min_size=sizes[0], max_size=sizes[1])


def class_count(arch: str, state_dict: dict[str, torch.Tensor], *, what: str) -> int:
    """How many object classes (background excluded) the weights of ``arch`` were trained for.

    Found without knowing the architecture's head: the models for 1 and 2 classes differ exactly in the
    shapes of the class-dependent tensors, and those shapes grow linearly with the class count.
    """
    one = _build(arch, 1, (64, 64)).state_dict()
    two = _build(arch, 2, (64, 64)).state_dict()
    dependent = [k for k in one if one[k].shape != two[k].shape]
    if not dependent:
        raise ModelError(f"cannot tell the class count of architecture {arch}")
    key = dependent[0]
    if key not in state_dict:
        raise _wrong_arch(arch, state_dict, one, what)
    step = two[key].shape[0] - one[key].shape[0]
    extra = state_dict[key].shape[0] - one[key].shape[0]
    if extra % step or extra // step + 1 < 1:
        raise ModelError(
            f"{what}: {key} has {state_dict[key].shape[0]} rows, which fits no class count of {arch}"
        )
    return int(extra // step + 1)


def _wrong_arch(
    arch: str, state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str
) -> ModelError:
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    return ModelError(
        f"{what} does not hold {arch} weights: {len(missing)} of its tensors are missing "
        f"(e.g. {', '.join(missing[:3]) or '-'}) and {len(unexpected)} are unknown to it "
        f"(e.g. {', '.join(unexpected[:3]) or '-'}); check --arch"
    )


def build_and_load(
    arch: str, state_dict: dict[str, torch.Tensor], *, num_classes: int, sizes: tuple[int, int], what: str
) -> nn.Module:
    """``arch`` for ``num_classes`` classes with the weights loaded strictly (every tensor must fit)."""
    model = _build(arch, num_classes, sizes)
    expected = model.state_dict()
    if set(expected) != set(state_dict):
        raise _wrong_arch(arch, state_dict, expected, what)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ModelError(f"{what} does not fit {arch} with {num_classes} classes: {exc}") from exc
    return model


def default_sizes(arch: str) -> tuple[int, int] | None:
    """The input sizes torchvision's builder picks for ``arch`` (None for our own or fixed-size models)."""
    name = arch.removeprefix(TORCHVISION_PREFIX)
    if name not in TORCHVISION_DETECTORS or name.startswith("ssd"):
        return None
    from torchvision.models import get_model

    model = get_model(name, weights=None, weights_backbone=None, num_classes=2)
    transform = model.transform
    return int(transform.min_size[0]), int(transform.max_size)


def source_label_names(arch: str, num_classes: int) -> list[str | None]:
    """Names of the model's labels 1..num_classes (COCO's for a torchvision COCO layout, else None)."""
    name = arch.removeprefix(TORCHVISION_PREFIX)
    if num_classes + 1 == COCO_LABELS and name in TORCHVISION_DETECTORS:
        from torchvision.models import get_model_weights

        categories = list(get_model_weights(name)["DEFAULT"].meta["categories"])
        return [None if c in ("N/A", "__background__") else str(c) for c in categories[1:]]
    return [None] * num_classes


def named_weights_url(arch: str, name: str) -> str:
    """The download URL of torchvision's named weights (``DEFAULT``, ``COCO_V1``, ...) of ``arch``."""
    from torchvision.models import get_model_weights

    short = arch.removeprefix(TORCHVISION_PREFIX)
    if short not in TORCHVISION_DETECTORS:
        raise ModelError(f"--weights {name}: {arch} is not a torchvision detector with published weights")
    enum = get_model_weights(short)
    try:
        return str(enum[name].url)
    except KeyError as exc:
        known = ", ".join(enum.__members__)
        raise ModelError(f"--weights {name}: {short} has no such weights; it has {known}") from exc


def hub_cache_file(url: str) -> Path:
    """Where PyTorch keeps a downloaded checkpoint: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def fetch_named_weights(arch: str, name: str) -> Path:
    """torchvision's named weights of ``arch`` from the hub cache, downloading them there if it can.

    Without internet access it fails at once, naming the file to put in the cache.
    """
    url = named_weights_url(arch, name)
    cached = hub_cache_file(url)
    if cached.is_file():
        return cached
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise ModelError(
            f"--weights {name}: torchvision's {arch} weights are not in the offline cache {cached} and "
            f"cannot be downloaded here ({exc}). On a machine with internet, run `curl -L -o "
            f"{cached.name} {url}` and copy the file to {cached} (or set TORCH_HOME), or pass the file "
            "as WEIGHTS"
        ) from exc
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(cached.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(cached)
    return cached
