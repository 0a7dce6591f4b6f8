"""Synthetic clips with events in a known 1% of them, and a tiny detector trained (and cached) for them.

Videos are rendered at 160x120 and 10 fps and cut into 2 s clips, each encoded to its own H.264 file.
A seeded 1% of the clips get one event, placed mid-clip, the kinds taken in turn: the scene's own
occlusion, lighting and rare_class events, and the injected blur, freeze and cut. In the benchmark's
ordinary traffic no object is of the rare class (:data:`ORDINARY_RARE_PROBABILITY`), so the rare_class
event is the only place one appears; the detector's training videos keep the scene's default 4%, so
the class is learnt, and rare, there.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from dataengine.formats import Box
from dataengine.synthetic import SyntheticEvent, SyntheticScene
from dataengine.synthetic.inject import InjectedEvent, inject
from dataengine.synthetic.video import encode_rgb, h264_writer
from dataengine.training.evaluation import coco_map
from dataengine.vision import Detector, build_detector

WIDTH, HEIGHT, FPS = 160, 120, 10.0
CLIP_FRAMES = 20
#: Every SAMPLE_EVERY-th frame of a clip is sampled for the triggers (2.5 of the 10 fps; ingest's
#: default samples 2 fps of 25-30 fps cameras, a smaller share still).
SAMPLE_EVERY = 4
EVENT_KINDS = ("occlusion", "lighting", "blur", "freeze", "cut", "rare_class")
CLASSES = ["person", "bed", "wheelchair"]
#: How often an ordinary object of the benchmark's videos is a wheelchair. The scene's default (4% of
#: objects, which stay for a whole video) would put wheelchairs in about 7% of ordinary clips, and an
#: event that 7% of the clips show is not a rare event.
ORDINARY_RARE_PROBABILITY = 0.0


@dataclass(frozen=True)
class BenchClip:
    """One clip of the benchmark: its file, where it comes from and the event in it (None for none)."""

    clip_id: str
    video_id: str
    path: Path
    event: str | None


def _event_positions(
    n_videos: int, clips_per_video: int, rate: float, seed: int
) -> dict[tuple[int, int], str]:
    rng = np.random.default_rng([seed, 1])
    n_clips = n_videos * clips_per_video
    n_events = max(1, round(rate * n_clips))
    chosen = rng.choice(n_clips, size=n_events, replace=False)
    return {
        (int(c) // clips_per_video, int(c) % clips_per_video): EVENT_KINDS[i % len(EVENT_KINDS)]
        for i, c in enumerate(sorted(chosen))
    }


def _event_span(rng: np.random.Generator, clip: int) -> tuple[int, int]:
    start = clip * CLIP_FRAMES + int(rng.integers(4, 9))
    return start, min(start + int(rng.integers(8, 13)), (clip + 1) * CLIP_FRAMES)


def _render(video: int, events: dict[int, str], clips_per_video: int, seed: int) -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng([seed, 2, video])
    spans = {clip: _event_span(rng, clip) for clip in events}
    scene_events = [
        SyntheticEvent(kind, *spans[c])  # type: ignore[arg-type]
        for c, kind in events.items()
        if kind in ("occlusion", "lighting", "rare_class")
    ]
    n = clips_per_video * CLIP_FRAMES
    scene = SyntheticScene(
        seed=seed * 1000 + video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=n, events=scene_events,
        rare_probability=ORDINARY_RARE_PROBABILITY,
    )  # fmt: skip
    frames = [rgb for _, rgb, _ in scene.frames()]
    for clip, kind in events.items():
        if kind in ("blur", "freeze", "cut"):
            start, end = spans[clip]
            other = []
            if kind == "cut":
                away = SyntheticScene(
                    seed=seed * 1000 + 999 - video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=end - start,
                    rare_probability=ORDINARY_RARE_PROBABILITY,
                )  # fmt: skip
                other = [rgb for _, rgb, _ in away.frames()]
            frames = inject(frames, InjectedEvent(kind, start, end), other=other)  # type: ignore[arg-type]
    return frames


def make_clips(
    root: Path, *, n_videos: int, clips_per_video: int, rate: float = 0.01, seed: int = 0
) -> list[BenchClip]:
    """Render the videos, cut and encode the clips under ``root``; a seeded ``rate`` of them hold an event."""
    positions = _event_positions(n_videos, clips_per_video, rate, seed)
    clips = []
    for video in range(n_videos):
        events = {c: kind for (v, c), kind in positions.items() if v == video}
        frames = _render(video, events, clips_per_video, seed)
        video_id = f"{seed:04x}{video:012x}"
        for c in range(clips_per_video):
            path = root / f"{video_id}-{c:03d}.mp4"
            with h264_writer(path, fps=FPS, width=WIDTH, height=HEIGHT) as (container, stream):
                for i, rgb in enumerate(frames[c * CLIP_FRAMES : (c + 1) * CLIP_FRAMES]):
                    encode_rgb(container, stream, rgb, pts=i)
            clips.append(BenchClip(f"{video_id}-{c * CLIP_FRAMES:07d}", video_id, path, events.get(c)))
    return clips


def decode(path: Path) -> list[NDArray[np.uint8]]:
    """Every frame of a clip file as RGB arrays: the reference cost for the trigger pass."""
    with av.open(str(path)) as container:
        return [
            np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            for frame in container.decode(video=0)
        ]


def _training_frames(recipe: DetectorRecipe) -> Iterator[tuple[NDArray[np.uint8], list[Box]]]:
    """Every 3rd frame of synthetic videos other than the benchmark's (seeds 500+), with their boxes.
    Every ``recipe.rare_video_every``-th video also holds a wheelchair throughout."""
    per_video = 40
    n = per_video * 3
    for video in range(max(1, recipe.frames // per_video)):
        rare = recipe.rare_video_every > 0 and video % recipe.rare_video_every == 0
        scene = SyntheticScene(
            seed=recipe.seed * 1000 + 500 + video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=n,
            events=[SyntheticEvent("rare_class", 0, n)] if rare else [],
        )  # fmt: skip
        for index, rgb, boxes in scene.frames():
            if index % 3 == 0:
                yield rgb, boxes


def training_class_boxes(recipe: DetectorRecipe | None = None) -> dict[str, int]:
    """Boxes per class in the detector's training frames: the class balance its dataset would record."""
    recipe = recipe or DetectorRecipe()
    counts = dict.fromkeys(CLASSES, 0)
    for _, boxes in _training_frames(recipe):
        for box in boxes:
            counts[box.label] += 1
    return counts


def _training_set(recipe: DetectorRecipe) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The training frames as tensors and detection targets."""
    images, targets = [], []
    for rgb, boxes in _training_frames(recipe):
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
        targets.append({
            "boxes": torch.tensor([b.xyxy for b in boxes], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([CLASSES.index(b.label) + 1 for b in boxes], dtype=torch.int64),
        })  # fmt: skip
    return images, targets


@dataclass(frozen=True)
class DetectorRecipe:
    """How the benchmark's detector is trained: docs/training.md's default recipe (SGD 0.02, momentum
    0.9, weight decay 1e-4, linear warm-up over min(50, steps / 4) steps then cosine decay, gradients
    clipped to norm 10, horizontal flips with probability 0.5, batch 4, 16 epochs) on 960 frames.
    The "previous" model is the same run's snapshot after ``previous_epoch`` epochs. Every
    ``rare_video_every``-th training video holds a wheelchair throughout, so the rare class is in the
    training labels, rarely (11% of their boxes): a detector never shown a class cannot report it."""

    arch: str = "tiny_fasterrcnn"
    frames: int = 960
    epochs: int = 16
    previous_epoch: int = 8
    batch: int = 4
    lr: float = 0.02
    hflip: float = 0.5
    seed: int = 0
    rare_video_every: int = 3

    def key(self) -> str:
        """A cache key of the recipe and the frame size it trains at."""
        text = json.dumps({**asdict(self), "size": [WIDTH, HEIGHT], "classes": CLASSES}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flip(
    image: torch.Tensor, target: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    boxes = target["boxes"].clone()
    width = image.shape[-1]
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {"boxes": boxes, "labels": target["labels"]}


def _build(recipe: DetectorRecipe) -> nn.Module:
    return build_detector(recipe.arch, num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH)


def _train(recipe: DetectorRecipe) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The state dicts of the fully trained model and of its snapshot after ``previous_epoch`` epochs."""
    torch.manual_seed(recipe.seed)
    images, targets = _training_set(recipe)
    model = _build(recipe)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=1e-4)
    steps = recipe.epochs * math.ceil(len(images) / recipe.batch)
    warmup = max(1, min(50, steps // 4))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.001 + 0.999 * step / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    order = torch.Generator().manual_seed(recipe.seed)
    previous: dict[str, torch.Tensor] = {}
    model.train()
    for epoch in range(recipe.epochs):
        permutation = torch.randperm(len(images), generator=order).tolist()
        flips = (torch.rand(len(images), generator=order) < recipe.hflip).tolist()
        for start in range(0, len(permutation), recipe.batch):
            batch = [
                _flip(images[i], targets[i]) if flips[i] else (images[i], targets[i])
                for i in permutation[start : start + recipe.batch]
            ]
            losses = model([b[0] for b in batch], [b[1] for b in batch])
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(torch.stack(list(losses.values())).sum())
            nn.utils.clip_grad_norm_(params, 10.0)
            optimiser.step()
            scheduler.step()
        if epoch + 1 == recipe.previous_epoch:
            previous = copy.deepcopy(model.state_dict())
    return model.state_dict(), previous


def train_detectors(
    recipe: DetectorRecipe | None = None, *, cache: Path | None = None, log: bool = True
) -> tuple[Detector, Detector, float]:
    """``(promoted, previous, training seconds)``: a tiny detector trained on other synthetic videos
    (``recipe``, default :class:`DetectorRecipe`), and its own earlier snapshot (the model promoted
    before it). Both are kept in ``cache`` and read from there when the recipe was trained before
    (0 training seconds then)."""
    recipe = recipe or DetectorRecipe()
    path = None if cache is None else cache / f"triggers-{recipe.arch}-{recipe.key()}.pt"
    seconds = 0.0
    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        promoted_state, previous_state = saved["promoted"], saved["previous"]
    else:
        started = time.perf_counter()
        promoted_state, previous_state = _train(recipe)
        seconds = time.perf_counter() - started
        if log:
            print(
                f"trained the benchmark detector ({recipe.arch}, {recipe.epochs} epochs) in {seconds:.0f} s"
            )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save({"promoted": promoted_state, "previous": previous_state}, buffer)
            path.write_bytes(buffer.getvalue())
    detectors = []
    for name, state in (("promoted", promoted_state), ("previous", previous_state)):
        model = _build(recipe)
        model.load_state_dict(state)
        model.eval()
        detectors.append(
            Detector(model, classes=CLASSES, model_id=f"bench-{name}", device=torch.device("cpu"))
        )
    return detectors[0], detectors[1], seconds


def detector_map50(detector: Detector, *, n_frames: int = 60, seed: int = 0) -> float:
    """COCO mAP@.5 of ``detector`` on every 3rd frame of synthetic videos that neither training nor the
    benchmark's clips use (seeds 900+): how well trained the benchmark's detector is."""
    frames: list[NDArray[np.uint8]] = []
    annotations: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    per_video = 20
    for video in range(max(1, n_frames // per_video)):
        scene = SyntheticScene(
            seed=seed * 1000 + 900 + video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=per_video * 3
        )
        for index, rgb, boxes in scene.frames():
            if index % 3:
                continue
            image_id = len(frames) + 1
            frames.append(rgb)
            images.append({"id": image_id, "width": WIDTH, "height": HEIGHT})
            for box in boxes:
                x0, y0, x1, y1 = box.xyxy
                category = CLASSES.index(box.label) + 1
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                })  # fmt: skip
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    results = [
        {
            "image_id": i + 1,
            "category_id": int(label) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(score),
        }
        for i, dets in enumerate(detector.predict(frames, batch_size=16, score_threshold=0.05))
        for (x0, y0, x1, y1), score, label in zip(
            dets.boxes_xyxy.tolist(), dets.scores, dets.labels, strict=True
        )
    ]
    return float(coco_map(gt, results)["map50"])


def sampled(frames: Sequence[NDArray[np.uint8]]) -> tuple[list[int], list[NDArray[np.uint8]]]:
    """The clip frame indices and frames the triggers see."""
    indices = list(range(0, len(frames), SAMPLE_EVERY))
    return indices, [frames[i] for i in indices]
