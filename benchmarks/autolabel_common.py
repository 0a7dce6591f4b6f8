"""Shared set-up of the autolabel benchmarks: synthetic scenes with ground truth, and detectors we train.

Nothing is downloaded: each detector is trained here from random weights on rendered synthetic frames,
with the training stage's default recipe (docs/training.md: 16 epochs, batch 4, SGD at 0.02, warm-up and
cosine decay, horizontal flips) on 240 frames. The members share the recipe and differ in their seed and
their training scenes, as models trained on different snapshots would. Trained models are cached under
``--cache``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from dataengine.formats import Box
from dataengine.synthetic import SyntheticScene, random_events
from dataengine.vision import Detector, build_detector

CLASSES = ["person", "bed", "wheelchair"]
WIDTH, HEIGHT = 320, 240
MIN_SIZE, MAX_SIZE = 192, 256


@dataclass(frozen=True, slots=True)
class Sample:
    """One rendered frame and its ground-truth boxes."""

    index: int
    rgb: NDArray[np.uint8]
    boxes: list[Box]


def render_clip(seed: int, n_frames: int, *, events: bool = True) -> list[Sample]:
    """A synthetic clip's frames with ground truth (occlusions and lighting changes when ``events``)."""
    scene = SyntheticScene(
        seed=seed,
        width=WIDTH,
        height=HEIGHT,
        n_frames=n_frames,
        classes=CLASSES,
        events=random_events(seed=seed, n_frames=n_frames) if events else (),
    )
    return [Sample(index, rgb, boxes) for index, rgb, boxes in scene.frames()]


@dataclass(frozen=True, slots=True)
class Recipe:
    """How one ensemble member is trained: architecture, seed, training scenes, steps.

    Each scene contributes ``frames_per_scene`` frames, every ``stride``-th of the rendered clip (the
    ingest samples clips at 5 of 10 fps), so neighbouring training frames are not near-duplicates.
    """

    name: str
    arch: str
    seed: int
    scenes: tuple[int, ...]
    frames_per_scene: int
    epochs: int
    lr: float = 0.02
    stride: int = 2
    flip: bool = True

    def key(self) -> str:
        """A cache key of the recipe."""
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:16]


def recipes(seed_set: int = 0) -> tuple[Recipe, ...]:
    """The three ensemble members of training seed set ``seed_set``.

    The same architecture and recipe (the training stage's defaults), different seeds and disjoint
    training scenes (8 scenes x 30 frames = 240 frames, the size of the dataset in docs/training.md
    "Measured"). Member ``m`` of set ``k`` has seed ``3k + m`` and always the same scenes, so the sets
    differ only in their seeds. Scenes 150-199 are validation, 200-299 the old evaluation split, 300+ the
    speed benchmark's clips, 400+ development, 1000+ the robustness protocol's evaluation ranges: none
    overlaps a training scene.
    """
    return tuple(
        Recipe(
            f"det-{name}" if seed_set == 0 else f"det-{name}{seed_set}",
            "tiny_fasterrcnn",
            seed=3 * seed_set + m,
            scenes=tuple(range(100 + 10 * m, 108 + 10 * m)),
            frames_per_scene=30,
            epochs=16,
        )
        for m, name in enumerate("abc")
    )


#: The members of the first seed set: the autolabel speed benchmark's detectors.
RECIPES = recipes(0)


def _targets(samples: Sequence[Sample]) -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([b.xyxy for b in s.boxes], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([CLASSES.index(b.label) + 1 for b in s.boxes], dtype=torch.int64),
        }
        for s in samples
    ]


def _flipped(
    image: torch.Tensor, target: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The image mirrored left-right, with its boxes mirrored too (the training stage's augmentation)."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes}


def train_detector(recipe: Recipe, *, batch_size: int = 4) -> nn.Module:
    """A detector trained from random weights on the recipe's scenes (SGD, warm-up, cosine decay)."""
    torch.manual_seed(recipe.seed)
    samples = [
        s
        for seed in recipe.scenes
        for s in render_clip(seed, recipe.frames_per_scene * recipe.stride)[:: recipe.stride]
    ]
    images = [torch.from_numpy(s.rgb).permute(2, 0, 1).float() / 255.0 for s in samples]
    targets = _targets(samples)
    model = build_detector(recipe.arch, num_classes=len(CLASSES), min_size=MIN_SIZE, max_size=MAX_SIZE)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=1e-4)
    steps = recipe.epochs * math.ceil(len(samples) / batch_size)
    warmup = max(1, min(50, steps // 4))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            0.001 + 0.999 * step / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))
        ),
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(samples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            flips = (torch.rand(len(batch), generator=generator) < 0.5).tolist() if recipe.flip else []
            pairs = [
                _flipped(images[i], targets[i]) if flips and flips[n] else (images[i], targets[i])
                for n, i in enumerate(batch)
            ]
            losses = model([image for image, _ in pairs], [target for _, target in pairs])
            loss = torch.stack(list(losses.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
    return model.eval()


def trained_detector(recipe: Recipe, cache: Path | None, *, log: bool = True) -> tuple[Detector, float]:
    """The recipe's detector (from ``cache`` if trained before) and its training seconds (0 if cached)."""
    model = build_detector(recipe.arch, num_classes=len(CLASSES), min_size=MIN_SIZE, max_size=MAX_SIZE)
    path = None if cache is None else cache / f"{recipe.name}-{recipe.key()}.pt"
    seconds = 0.0
    if path is not None and path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        started = time.perf_counter()
        model = train_detector(recipe)
        seconds = time.perf_counter() - started
        if log:
            print(f"trained {recipe.name} ({recipe.arch}) in {seconds:.0f} s")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            path.write_bytes(buffer.getvalue())
    return Detector(model, classes=CLASSES, model_id=recipe.name, device=torch.device("cpu")), seconds
