"""Synthetic clips with events in a known 1% of them, and a tiny detector trained for the occasion.

Videos are rendered at 160x120 and 10 fps and cut into 2 s clips, each encoded to its own H.264 file.
A seeded 1% of the clips get one event, placed mid-clip, the kinds taken in turn: the scene's own
occlusion, lighting and rare_class events, and the injected blur, freeze and cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from numpy.typing import NDArray

from dataengine.synthetic import SyntheticEvent, SyntheticScene
from dataengine.synthetic.inject import InjectedEvent, inject
from dataengine.synthetic.video import encode_rgb, h264_writer
from dataengine.vision import Detector, build_detector

WIDTH, HEIGHT, FPS = 160, 120, 10.0
CLIP_FRAMES = 20
#: Every SAMPLE_EVERY-th frame of a clip is sampled for the triggers (2.5 of the 10 fps; ingest's
#: default samples 2 fps of 25-30 fps cameras, a smaller share still).
SAMPLE_EVERY = 4
EVENT_KINDS = ("occlusion", "lighting", "blur", "freeze", "cut", "rare_class")
CLASSES = ["person", "bed", "wheelchair"]


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
        seed=seed * 1000 + video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=n, events=scene_events
    )
    frames = [rgb for _, rgb, _ in scene.frames()]
    for clip, kind in events.items():
        if kind in ("blur", "freeze", "cut"):
            start, end = spans[clip]
            other = []
            if kind == "cut":
                away = SyntheticScene(
                    seed=seed * 1000 + 999 - video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=end - start
                )
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


def _training_set(n_frames: int, seed: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = [], []
    per_video = 40
    for video in range(max(1, n_frames // per_video)):
        scene = SyntheticScene(
            seed=seed * 1000 + 500 + video, width=WIDTH, height=HEIGHT, fps=FPS, n_frames=per_video * 3
        )
        for index, rgb, boxes in scene.frames():
            if index % 3:
                continue
            images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
            targets.append({
                "boxes": torch.tensor([b.xyxy for b in boxes], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([CLASSES.index(b.label) + 1 for b in boxes], dtype=torch.int64),
            })  # fmt: skip
    return images, targets


def train_detectors(*, iterations: int, seed: int = 0, batch: int = 4) -> tuple[Detector, Detector]:
    """``(promoted, previous)``: a tiny detector trained on other synthetic videos, and its own
    snapshot at half the iterations (the model promoted before it)."""
    torch.manual_seed(seed)
    images, targets = _training_set(240, seed)
    model = build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    order = torch.Generator().manual_seed(seed)
    previous = None
    model.train()
    for step in range(iterations):
        pick = torch.randint(len(images), (batch,), generator=order).tolist()
        losses = model([images[i] for i in pick], [targets[i] for i in pick])
        optimiser.zero_grad()
        torch.autograd.backward(sum(losses.values()))
        optimiser.step()
        if step + 1 == iterations // 2:
            previous = build_detector(
                "tiny_fasterrcnn", num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH
            )
            previous.load_state_dict(model.state_dict())
    assert previous is not None
    device = torch.device("cpu")
    return Detector(model, classes=CLASSES, model_id="bench-promoted", device=device), Detector(
        previous, classes=CLASSES, model_id="bench-previous", device=device
    )


def sampled(frames: Sequence[NDArray[np.uint8]]) -> tuple[list[int], list[NDArray[np.uint8]]]:
    """The clip frame indices and frames the triggers see."""
    indices = list(range(0, len(frames), SAMPLE_EVERY))
    return indices, [frames[i] for i in indices]
