"""The vocabulary of triggers: what a trigger sees, what it returns, and the registry of triggers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import ConfigError
from dataengine.vision.inference import Detections


@dataclass(frozen=True, slots=True)
class TriggerResult:
    """A trigger's verdict on one clip: ``score`` in [0, 1], the clip frame indices where it fired."""

    score: float
    frames: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"a trigger score lies in [0, 1], got {self.score}")


@dataclass(frozen=True, slots=True)
class ClipFrames:
    """The sampled frames of a clip: RGB ``uint8`` arrays and their clip frame indices, in order.

    ``video_id`` groups clips of one camera, for statistics that compare a clip with its neighbours.
    """

    clip_id: str
    indices: list[int]
    frames: list[NDArray[np.uint8]]
    video_id: str | None = None


AnomalyFunction = Callable[["ClipFrames"], TriggerResult]


@dataclass(slots=True)
class TriggerInputs:
    """Everything a trigger may look at for one clip.

    ``detections`` are the promoted model's, one per frame, down to ``candidate_threshold``; a box is
    *confident* at ``score_threshold``. ``reference_detections`` come from the reference model (the model
    promoted before, or a second architecture), labels already mapped to the promoted model's classes.
    Each is None when its model is not available. ``anomaly`` scores a clip with the anomaly
    autoencoder. ``class_prior`` is the promoted model's training box count per class, indexed like its
    labels and named by ``class_names``. ``cache`` lets triggers share work on the same clip (the image
    statistics, the tracks).
    """

    clip: ClipFrames
    detections: list[Detections] | None = None
    reference_detections: list[Detections] | None = None
    model_id: str | None = None
    reference_model_id: str | None = None
    score_threshold: float = 0.5
    candidate_threshold: float = 0.05
    anomaly: AnomalyFunction | None = None
    class_prior: Sequence[float] | None = None
    class_names: Sequence[str] | None = None
    cache: dict[str, Any] = field(default_factory=dict)


TriggerFunction = Callable[[TriggerInputs], TriggerResult]


@dataclass(frozen=True, slots=True)
class Trigger:
    """A named scoring function; ``needs_model`` triggers only run when a model is promoted."""

    name: str
    needs_model: bool
    compute: TriggerFunction
    #: Also needs a reference model: the model promoted before, or a second architecture.
    needs_previous_model: bool = False
    description: str = ""
    #: Needs the anomaly autoencoder (`dataengine triggers train-anomaly`).
    needs_anomaly_model: bool = False
    #: Needs the class balance of the promoted model's training labels (its dataset's ``class_boxes``).
    needs_class_prior: bool = False


class TriggerRegistry:
    """Triggers by name, in registration order (which also breaks ties between equal scores)."""

    def __init__(self) -> None:
        self._triggers: dict[str, Trigger] = {}

    def register(self, trigger: Trigger) -> Trigger:
        """Add ``trigger``; a second trigger with the same name is a :class:`ConfigError`."""
        if trigger.name in self._triggers:
            raise ConfigError(f"a trigger named {trigger.name!r} is registered already")
        self._triggers[trigger.name] = trigger
        return trigger

    def get(self, name: str) -> Trigger:
        """The trigger called ``name``."""
        try:
            return self._triggers[name]
        except KeyError:
            raise ConfigError(f"unknown trigger {name!r}; triggers are {', '.join(self._triggers)}") from None

    def select(self, names: Sequence[str] | None = None) -> list[Trigger]:
        """The named triggers (all of them when ``names`` is None), in registration order."""
        if names is None:
            return list(self._triggers.values())
        wanted = {self.get(name).name for name in names}
        return [t for t in self._triggers.values() if t.name in wanted]

    def names(self) -> list[str]:
        """Every registered trigger name."""
        return list(self._triggers)

    def __iter__(self) -> Iterator[Trigger]:
        return iter(list(self._triggers.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._triggers

    def __len__(self) -> int:
        return len(self._triggers)
