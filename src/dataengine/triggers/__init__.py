"""Data triggers: score newly ingested clips for how much a person labelling them would teach the model,
and select the best under a labelling budget (ARCHITECTURE §1, stage ``ingested → scored → selected``)."""

from dataengine.triggers.base import ClipFrames, Trigger, TriggerInputs, TriggerRegistry, TriggerResult
from dataengine.triggers.builtin import (
    ANOMALY,
    BLUR,
    BRIGHTNESS,
    DISAGREEMENT,
    FLICKER,
    FROZEN,
    RARE_CLASS,
    SCENE_CUT,
    TEMPORAL,
    TRIGGERS,
    default_registry,
)
from dataengine.triggers.loading import NO_ANOMALY_MESSAGE, NO_MODEL_MESSAGE
from dataengine.triggers.run import TriggerReport, load_clip_frames, run_triggers, score_chunk, score_clip
from dataengine.triggers.selection import Candidate, Decision, budget_size, combine, select, strongest
from dataengine.triggers.signals import (
    class_rarity,
    compare_frame,
    disagreement_score,
    flicker_score,
    rare_class_score,
    temporal_score,
)
from dataengine.triggers.tracks import link_tracks
from dataengine.vision.tracks import Track

__all__ = [
    "ANOMALY",
    "BLUR",
    "BRIGHTNESS",
    "DISAGREEMENT",
    "FLICKER",
    "FROZEN",
    "NO_ANOMALY_MESSAGE",
    "NO_MODEL_MESSAGE",
    "RARE_CLASS",
    "SCENE_CUT",
    "TEMPORAL",
    "TRIGGERS",
    "Candidate",
    "ClipFrames",
    "Decision",
    "Track",
    "Trigger",
    "TriggerInputs",
    "TriggerRegistry",
    "TriggerReport",
    "TriggerResult",
    "budget_size",
    "class_rarity",
    "combine",
    "compare_frame",
    "default_registry",
    "disagreement_score",
    "flicker_score",
    "link_tracks",
    "load_clip_frames",
    "rare_class_score",
    "run_triggers",
    "score_chunk",
    "score_clip",
    "select",
    "strongest",
    "temporal_score",
]
