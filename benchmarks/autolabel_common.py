"""Shared set-up of the autolabel benchmarks: synthetic scenes with ground truth, and detectors we train.

Nothing is downloaded: each detector is trained here from random weights on rendered synthetic frames,
for a short while on purpose, so the single model makes the mistakes (misses, flicker, class swaps)
an ensemble with hindsight is meant to repair. Trained models are cached under ``--cache``.
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
    """How one ensemble member is trained: architecture, seed, training scenes, steps."""

    name: str
    arch: str
    seed: int
    scenes: tuple[int, ...]
    frames_per_scene: int
    epochs: int
    lr: float = 0.02

    def key(self) -> str:
        """A cache key of the recipe."""
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:16]


#: The ensemble members of both autolabel benchmarks: the same architecture, different seeds and scenes.
RECIPES = (
    Recipe("det-a", "tiny_fasterrcnn", seed=0, scenes=(100, 101, 102), frames_per_scene=40, epochs=8),
    Recipe("det-b", "tiny_fasterrcnn", seed=1, scenes=(103, 104, 105), frames_per_scene=40, epochs=8),
    Recipe("det-c", "tiny_fasterrcnn", seed=2, scenes=(106, 107, 108), frames_per_scene=40, epochs=8),
)


def _targets(samples: Sequence[Sample]) -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([b.xyxy for b in s.boxes], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([CLASSES.index(b.label) + 1 for b in s.boxes], dtype=torch.int64),
        }
        for s in samples
    ]


def train_detector(recipe: Recipe, *, batch_size: int = 4) -> nn.Module:
    """A detector trained from random weights on the recipe's scenes (SGD, warm-up, cosine decay)."""
    torch.manual_seed(recipe.seed)
    samples = [s for seed in recipe.scenes for s in render_clip(seed, recipe.frames_per_scene)]
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
            losses = model([images[i] for i in batch], [targets[i] for i in batch])
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
