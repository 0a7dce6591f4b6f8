"""The one track type: an object's observations over a clip's sampled frames.

Autolabel's tracker and the triggers' track linking both build :class:`Track` objects; ``positions``
are sampled-frame positions in the clip, ``boxes`` are ``xyxy`` pixels, ``id`` numbers the track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

#: Weight of the newest displacement in the velocity estimate (exponential moving average).
VELOCITY_ALPHA = 0.5


@dataclass(slots=True)
class Track:
    """One object's observations: positions, boxes, scores and labels, and its velocity per position."""

    id: int
    positions: list[int] = field(default_factory=list)
    boxes: list[NDArray[np.floating]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    velocity: NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    #: Hindsight's score for the track when something better than its mean score is known (recovery).
    confidence: float | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def add(self, position: int, box: NDArray[np.floating], score: float, label: int) -> None:
        """Append an observation and update the velocity (per sampled frame) from the previous one."""
        if self.positions:
            step = np.asarray(box - self.boxes[-1], dtype=np.float64) / max(position - self.positions[-1], 1)
            self.velocity = (
                step if len(self) == 1 else (1 - VELOCITY_ALPHA) * self.velocity + VELOCITY_ALPHA * step
            )
        self.positions.append(position)
        self.boxes.append(box)
        self.scores.append(score)
        self.labels.append(label)

    def predicted(self, position: int) -> NDArray[np.float64]:
        """Where the box should be at ``position``, moving at the track's velocity."""
        return np.asarray(self.boxes[-1], dtype=np.float64) + self.velocity * (position - self.positions[-1])

    def confident(self, threshold: float) -> list[int]:
        """Indices of the observations whose score is at least ``threshold``."""
        return [i for i, score in enumerate(self.scores) if score >= threshold]
