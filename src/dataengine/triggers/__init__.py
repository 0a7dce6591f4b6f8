"""Data triggers: score newly ingested clips for how much a person labelling them would teach the model,
and select the best under a labelling budget (ARCHITECTURE §1, stage ``ingested → scored → selected``)."""

from dataengine.triggers.base import ClipFrames, Trigger, TriggerInputs, TriggerRegistry, TriggerResult
from dataengine.triggers.builtin import BRIGHTNESS_CHANGE, DISAGREEMENT, FLICKER, TRIGGERS, default_registry
from dataengine.triggers.run import NO_MODEL_MESSAGE, TriggerReport, load_clip_frames, run_triggers
from dataengine.triggers.selection import (
    RankedClip,
    best_trigger,
    budget_size,
    rank_clips,
    select_under_budget,
)
from dataengine.triggers.signals import (
    brightness_change_score,
    disagreement_score,
    flicker_score,
    frame_f1,
    mean_luma,
)

__all__ = [
    "BRIGHTNESS_CHANGE",
    "DISAGREEMENT",
    "FLICKER",
    "NO_MODEL_MESSAGE",
    "TRIGGERS",
    "ClipFrames",
    "RankedClip",
    "Trigger",
    "TriggerInputs",
    "TriggerRegistry",
    "TriggerReport",
    "TriggerResult",
    "best_trigger",
    "brightness_change_score",
    "budget_size",
    "default_registry",
    "disagreement_score",
    "flicker_score",
    "frame_f1",
    "load_clip_frames",
    "mean_luma",
    "rank_clips",
    "run_triggers",
    "select_under_budget",
]
