"""A seeded scene of moving objects with exact per-frame ground truth, and the events that disturb it.

Ground-truth rule: an object is listed in a frame when at least :data:`MIN_VISIBLE_FRACTION` of its
painted pixels are visible (inside the frame and not covered by a nearer object or the occluder); its
box is the object's full extent clipped to the frame. Events cover frames ``start_frame`` (inclusive)
to ``end_frame`` (exclusive).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import ConfigError
from dataengine.formats import Box
from dataengine.synthetic.shapes import Sprite, background, sprite_for

EventKind = Literal["occlusion", "lighting", "rare_class"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
#: Objects with a smaller visible fraction of their pixels are left out of a frame's ground truth.
MIN_VISIBLE_FRACTION = 0.3
#: The class that appears only rarely, unless a ``rare_class`` event brings it in.
RARE_CLASS = "wheelchair"
#: Chance that an ordinary scene object is of the rare class (the default of ``rare_probability``).
RARE_PROBABILITY = 0.04
#: Width of the occluding panel as a fraction of the frame width.
OCCLUDER_WIDTH_FRACTION = 0.45
_OCCLUDER = -2
# Independent random streams, so adding an event never changes the objects or noise of a scene.
_LAYOUT, _OBJECT, _NOISE, _LIGHTING, _EVENTS, _EVENT_OBJECT = range(6)


@dataclass(frozen=True)
class SyntheticEvent:
    """Something that happens over frames ``[start_frame, end_frame)`` of a synthetic video.

    ``occlusion``: a panel sweeps across the frame in front of every object; ``lighting``: the whole
    frame gets darker or brighter; ``rare_class``: an object of the rare class is in the scene.
    """

    kind: EventKind
    start_frame: int
    end_frame: int

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ConfigError(f"unknown synthetic event kind {self.kind!r}; kinds are {EVENT_KINDS}")
        if not 0 <= self.start_frame < self.end_frame:
            raise ConfigError(
                f"synthetic event {self.kind} needs 0 <= start_frame < end_frame, "
                f"got [{self.start_frame}, {self.end_frame})"
            )

    def active(self, index: int) -> bool:
        """Whether frame ``index`` lies in the event."""
        return self.start_frame <= index < self.end_frame

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as recorded in the ground truth's ``producer``."""
        return {"kind": self.kind, "start_frame": self.start_frame, "end_frame": self.end_frame}


@dataclass
class _Mover:
    """One object: its sprite, top-left position and velocity in pixels per frame, and its bounds."""

    track: int
    label: str
    sprite: Sprite
    x: float
    y: float
    vx: float
    vy: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    first_frame: int = 0
    end_frame: int | None = None

    def present(self, index: int) -> bool:
        return index >= self.first_frame and (self.end_frame is None or index < self.end_frame)

    def step(self) -> None:
        self.x, self.vx = _bounce(self.x + self.vx, self.vx, self.x_range)
        self.y, self.vy = _bounce(self.y + self.vy, self.vy, self.y_range)


def _bounce(position: float, velocity: float, bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = bounds
    if position < low:
        return low + (low - position), abs(velocity)
    if position > high:
        return high - (position - high), -abs(velocity)
    return position, velocity


class SyntheticScene:
    """A seeded room with moving people, beds and (rarely) wheelchairs, with exact ground truth.

    Each object present from the start is of the rare class with probability ``rare_probability``;
    a ``rare_class`` event adds one for its frames whatever that probability.

    The same arguments always give the same pixels and boxes. ``frames()`` may be called many times.
    """

    def __init__(
        self,
        *,
        seed: int,
        width: int = 320,
        height: int = 240,
        fps: float = 10.0,
        n_frames: int = 100,
        classes: Sequence[str] = ("person", "bed", "wheelchair"),
        events: Sequence[SyntheticEvent] = (),
        n_objects: int | None = None,
        rare_probability: float = RARE_PROBABILITY,
    ) -> None:
        _check_arguments(seed=seed, width=width, height=height, fps=fps, n_frames=n_frames, classes=classes)
        if not 0.0 <= rare_probability <= 1.0:
            raise ConfigError(f"synthetic rare_probability must lie in [0, 1], got {rare_probability}")
        self.rare_probability = rare_probability
        self.seed = seed
        self.width = width
        self.height = height
        self.fps = float(fps)
        self.n_frames = n_frames
        self.classes = list(classes)
        self.events = list(events)
        self.rare_class = RARE_CLASS if RARE_CLASS in self.classes else self.classes[-1]
        layout = np.random.default_rng([seed, _LAYOUT])
        self._background, self._horizon = background(layout, width=width, height=height)
        count = int(layout.integers(2, 5)) if n_objects is None else n_objects
        if count < 0:
            raise ConfigError(f"n_objects must be >= 0, got {count}")
        self._movers = [self._base_mover(track) for track in range(count)]
        self._movers += [
            self._event_mover(count + i, event)
            for i, event in enumerate(self.events)
            if event.kind == "rare_class"
        ]
        self._gains = [self._lighting_gain(i) for i in range(len(self.events))]

    @property
    def n_objects(self) -> int:
        """Number of objects that are in the scene from its start (event objects not counted)."""
        return sum(1 for mover in self._movers if mover.end_frame is None)

    def frames(self) -> Iterator[tuple[int, NDArray[np.uint8], list[Box]]]:
        """Every frame: its index, RGB ``uint8`` (height, width, 3) pixels and ground-truth boxes."""
        movers = [replace(mover) for mover in self._movers]
        for index in range(self.n_frames):
            rgb, boxes = self._render(index, [m for m in movers if m.present(index)])
            yield index, rgb, boxes
            for mover in movers:
                if mover.present(index):
                    mover.step()

    # Objects ------------------------------------------------------------------------------------

    def _base_mover(self, track: int) -> _Mover:
        rng = np.random.default_rng([self.seed, _OBJECT, track])
        common = [name for name in self.classes if name != self.rare_class] or [self.rare_class]
        rare = rng.random() < self.rare_probability
        label = self.rare_class if rare else common[int(rng.integers(len(common)))]
        return self._mover(track, label, rng)

    def _event_mover(self, track: int, event: SyntheticEvent) -> _Mover:
        rng = np.random.default_rng([self.seed, _EVENT_OBJECT, track])
        mover = self._mover(track, self.rare_class, rng)
        mover.first_frame, mover.end_frame = event.start_frame, event.end_frame
        return mover

    def _mover(self, track: int, label: str, rng: np.random.Generator) -> _Mover:
        sprite = sprite_for(label, rng, scale=self.height / 240)
        w, h = sprite.width, sprite.height
        # Objects may leave the frame by a quarter of their size; their feet stay on the floor.
        x_range = (-0.25 * w, self.width - 0.75 * w)
        y_high = self.height - 0.8 * h
        floor_top = self._horizon + 0.2 * (self.height - self._horizon)
        y_range = (min(floor_top - h, y_high), y_high)
        speed = rng.uniform(8, 35) * (0.3 if label == "bed" else 1.0) / self.fps
        angle = rng.uniform(-0.35, 0.35) + (np.pi if rng.random() < 0.5 else 0.0)
        return _Mover(
            track=track,
            label=label,
            sprite=sprite,
            x=float(rng.uniform(0, max(1.0, self.width - w))),
            y=float(rng.uniform(*y_range)),
            vx=float(speed * np.cos(angle)),
            vy=float(speed * np.sin(angle) * 0.3),
            x_range=x_range,
            y_range=y_range,
        )

    def _lighting_gain(self, event_index: int) -> float:
        rng = np.random.default_rng([self.seed, _LIGHTING, event_index])
        return float(rng.uniform(0.3, 0.5) if rng.random() < 0.5 else rng.uniform(1.5, 1.8))

    # Rendering ----------------------------------------------------------------------------------

    def _render(self, index: int, movers: list[_Mover]) -> tuple[NDArray[np.uint8], list[Box]]:
        image = self._background.copy()
        owner = np.full((self.height, self.width), -1, dtype=np.int32)
        ordered = sorted(movers, key=lambda m: (m.y + m.sprite.height, m.track))
        boxes_xyxy = [self._paste(image, owner, m, k) for k, m in enumerate(ordered)]
        for event in self.events:
            if event.kind == "occlusion" and event.active(index):
                self._paste_occluder(image, owner, event, index)
        visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(ordered))
        boxes = [
            Box(label=m.label, xyxy=xyxy, track=m.track, score=None, origin="synthetic")
            for k, (m, xyxy) in enumerate(zip(ordered, boxes_xyxy, strict=True))
            if xyxy is not None and visible[k] >= MIN_VISIBLE_FRACTION * m.sprite.n_pixels
        ]
        return self._finish(image, index), sorted(boxes, key=lambda b: b.track or 0)

    def _paste(
        self, image: NDArray[np.uint8], owner: NDArray[np.int32], mover: _Mover, k: int
    ) -> tuple[float, float, float, float] | None:
        sprite = mover.sprite
        x0, y0 = round(mover.x), round(mover.y)
        x1, y1 = max(0, x0), max(0, y0)
        x2, y2 = min(self.width, x0 + sprite.width), min(self.height, y0 + sprite.height)
        if x1 >= x2 or y1 >= y2:
            return None
        mask = sprite.mask[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
        image[y1:y2, x1:x2][mask] = sprite.rgb[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0][mask]
        owner[y1:y2, x1:x2][mask] = k
        return float(x1), float(y1), float(x2), float(y2)

    def _paste_occluder(
        self, image: NDArray[np.uint8], owner: NDArray[np.int32], event: SyntheticEvent, index: int
    ) -> None:
        panel = int(self.width * OCCLUDER_WIDTH_FRACTION)
        progress = (index - event.start_frame + 0.5) / (event.end_frame - event.start_frame)
        left = round(-panel + (self.width + panel) * progress)
        x1, x2 = max(0, left), min(self.width, left + panel)
        if x1 >= x2:
            return
        shade = 45 + 12 * ((np.arange(x1, x2) - left) // 6 % 2)
        image[:, x1:x2] = shade.astype(np.uint8)[None, :, None]
        owner[:, x1:x2] = _OCCLUDER

    def _finish(self, image: NDArray[np.uint8], index: int) -> NDArray[np.uint8]:
        gain = 1.0
        for event, event_gain in zip(self.events, self._gains, strict=True):
            if event.kind == "lighting" and event.active(index):
                gain *= event_gain
        noise = np.random.default_rng([self.seed, _NOISE, index]).standard_normal(
            image.shape, dtype=np.float32
        )
        pixels = image.astype(np.float32) * np.float32(gain) + noise * np.float32(3.0)
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _check_arguments(
    *, seed: int, width: int, height: int, fps: float, n_frames: int, classes: Sequence[str]
) -> None:
    if seed < 0:
        raise ConfigError(f"synthetic scene seed must be >= 0, got {seed}")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ConfigError(f"synthetic frame size must be even and at least 32x32, got {width}x{height}")
    if fps <= 0:
        raise ConfigError(f"synthetic fps must be > 0, got {fps}")
    if n_frames < 0:
        raise ConfigError(f"synthetic n_frames must be >= 0, got {n_frames}")
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"synthetic classes must be non-empty and unique, got {list(classes)}")


def random_events(*, seed: int, n_frames: int) -> list[SyntheticEvent]:
    """A seeded event policy for demos: about 40% of videos get one or two events, the rest none."""
    rng = np.random.default_rng([seed, _EVENTS])
    if n_frames < 4 or rng.random() >= 0.4:
        return []
    count = 2 if rng.random() < 0.3 else 1
    kinds = rng.choice(len(EVENT_KINDS), size=count, replace=False)
    events = []
    for kind_index in kinds:
        length = max(2, int(n_frames * rng.uniform(0.15, 0.35)))
        start = int(rng.integers(0, n_frames - length + 1))
        kind: EventKind = EVENT_KINDS[int(kind_index)]  # type: ignore[assignment]
        events.append(SyntheticEvent(kind=kind, start_frame=start, end_frame=start + length))
    return sorted(events, key=lambda e: (e.start_frame, e.kind))
