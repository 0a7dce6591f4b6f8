"""Events injected into rendered frames, for events the scene itself cannot make: a defocused lens, a
frozen camera, a cut to another scene. Each works on a list of RGB frames and returns a new list.

Together with the scene's own events (occlusion, lighting, rare_class) they give the trigger benchmark
clips whose labels are known: the frames ``[start, end)`` of an event are the ones a trigger should name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import ConfigError

InjectedKind = Literal["blur", "freeze", "cut"]
INJECTED_KINDS: tuple[str, ...] = get_args(InjectedKind)


@dataclass(frozen=True)
class InjectedEvent:
    """An image-level event over frames ``[start_frame, end_frame)`` of a frame list."""

    kind: InjectedKind
    start_frame: int
    end_frame: int

    def __post_init__(self) -> None:
        if self.kind not in INJECTED_KINDS:
            raise ConfigError(f"unknown injected event kind {self.kind!r}; kinds are {INJECTED_KINDS}")
        if not 0 <= self.start_frame < self.end_frame:
            raise ConfigError(
                f"injected event {self.kind} needs 0 <= start_frame < end_frame, "
                f"got [{self.start_frame}, {self.end_frame})"
            )


def box_blur(rgb: NDArray[np.uint8], radius: int) -> NDArray[np.uint8]:
    """``rgb`` blurred by three passes of a (2 * radius + 1)-wide box filter (close to a Gaussian)."""
    image = rgb.astype(np.float32)
    for axis in (0, 1):
        for _ in range(3):
            padded = np.concatenate(
                [np.repeat(image.take([0], axis=axis), radius, axis=axis), image,
                 np.repeat(image.take([-1], axis=axis), radius, axis=axis)],
                axis=axis,
            )  # fmt: skip
            summed = np.cumsum(padded, axis=axis, dtype=np.float32)
            zero = np.zeros_like(summed.take([0], axis=axis))
            summed = np.concatenate([zero, summed], axis=axis)
            n = image.shape[axis]
            width = 2 * radius + 1
            window = summed.take(range(width, width + n), axis=axis) - summed.take(range(n), axis=axis)
            image = np.asarray(window / width, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def inject(
    frames: Sequence[NDArray[np.uint8]],
    event: InjectedEvent,
    *,
    other: Sequence[NDArray[np.uint8]] = (),
    blur_radius: int = 2,
) -> list[NDArray[np.uint8]]:
    """``frames`` with ``event`` applied; a ``cut`` shows ``other`` (same-sized frames of another scene)
    from ``start_frame`` to ``end_frame``."""
    out = [np.array(f, copy=True) for f in frames]
    span = range(event.start_frame, min(event.end_frame, len(out)))
    if event.kind == "blur":
        for i in span:
            out[i] = box_blur(out[i], blur_radius)
    elif event.kind == "freeze":
        held = out[max(0, event.start_frame - 1)] if out else None
        for i in span:
            out[i] = np.array(held, copy=True)
    else:
        if len(other) < len(span):
            raise ConfigError(f"a cut over {len(span)} frames needs as many other frames, got {len(other)}")
        for j, i in enumerate(span):
            if other[j].shape != out[i].shape:
                raise ConfigError(f"cut frames must be {out[i].shape}, got {other[j].shape}")
            out[i] = np.array(other[j], copy=True)
    return out
