"""The built-in triggers and the default registry that :func:`run_triggers` uses."""

from __future__ import annotations

from dataengine.errors import ModelError
from dataengine.triggers.base import Trigger, TriggerInputs, TriggerRegistry, TriggerResult
from dataengine.triggers.signals import brightness_change_score, disagreement_score, flicker_score


def _flicker(inputs: TriggerInputs) -> TriggerResult:
    if inputs.detections is None:
        raise ModelError(
            f"clip {inputs.clip.clip_id}: the flicker trigger needs the promoted model's detections"
        )
    return flicker_score(inputs.detections, inputs.clip.indices)


def _disagreement(inputs: TriggerInputs) -> TriggerResult:
    if inputs.detections is None or inputs.previous_detections is None:
        raise ModelError(
            f"clip {inputs.clip.clip_id}: the disagreement trigger needs the detections of two models"
        )
    result = disagreement_score(inputs.detections, inputs.previous_detections, inputs.clip.indices)
    result.details["previous_model_id"] = inputs.previous_model_id
    return result


def _brightness_change(inputs: TriggerInputs) -> TriggerResult:
    return brightness_change_score(inputs.clip.frames, inputs.clip.indices)


FLICKER = Trigger(
    name="flicker",
    needs_model=True,
    compute=_flicker,
    description="the promoted detector loses and refinds objects between consecutive sampled frames",
)
DISAGREEMENT = Trigger(
    name="disagreement",
    needs_model=True,
    needs_previous_model=True,
    compute=_disagreement,
    description="the promoted model and the model promoted before it find different boxes",
)
BRIGHTNESS_CHANGE = Trigger(
    name="brightness_change",
    needs_model=False,
    compute=_brightness_change,
    description="the mean luminance jumps between consecutive sampled frames (a lighting event)",
)


def default_registry() -> TriggerRegistry:
    """A registry holding the built-in triggers, in the order that breaks score ties."""
    registry = TriggerRegistry()
    for trigger in (FLICKER, DISAGREEMENT, BRIGHTNESS_CHANGE):
        registry.register(trigger)
    return registry


#: The triggers :func:`dataengine.triggers.run_triggers` runs unless told otherwise; register more here.
TRIGGERS = default_registry()
