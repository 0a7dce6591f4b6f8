"""The built-in triggers and the default registry that :func:`run_triggers` uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dataengine.errors import ModelError
from dataengine.triggers.base import ClipFrames, Trigger, TriggerInputs, TriggerRegistry, TriggerResult
from dataengine.triggers.image_signals import (
    FrameStats,
    blur_score,
    brightness_score,
    frame_stats,
    frame_stats_many,
    frozen_score,
    scene_cut_score,
)
from dataengine.triggers.signals import disagreement_score, flicker_score, rare_class_score, temporal_score
from dataengine.triggers.tracks import TrackArrays, link_track_arrays
from dataengine.vision.inference import Detections

#: Boxes per frame the detection triggers look at, strongest first: enough for every object and its near
#: misses, and it bounds the cost of tracking a detector that fires everywhere.
MAX_CANDIDATES = 10


def strongest_boxes(detections: Detections, limit: int = MAX_CANDIDATES) -> Detections:
    """The ``limit`` highest-scoring detections (all of them when there are fewer), in score order."""
    if len(detections) <= limit:
        return detections
    keep = np.argsort(-detections.scores, kind="stable")[:limit]
    return Detections(detections.boxes_xyxy[keep], detections.scores[keep], detections.labels[keep])


def _detections(inputs: TriggerInputs, trigger: str) -> list[Detections]:
    """The promoted model's detections, at most :data:`MAX_CANDIDATES` per frame (computed once)."""
    if inputs.detections is None:
        raise ModelError(
            f"clip {inputs.clip.clip_id}: the {trigger} trigger needs the promoted model's detections"
        )
    if "detections" not in inputs.cache:
        inputs.cache["detections"] = [strongest_boxes(d) for d in inputs.detections]
    capped: list[Detections] = inputs.cache["detections"]
    return capped


def _tracks(inputs: TriggerInputs, trigger: str) -> TrackArrays:
    """The promoted model's tracks of the clip, linked once and shared by flicker and temporal."""
    if "tracks" not in inputs.cache:
        inputs.cache["tracks"] = link_track_arrays(_detections(inputs, trigger))
    tracks: TrackArrays = inputs.cache["tracks"]
    return tracks


def _flicker(inputs: TriggerInputs) -> TriggerResult:
    return flicker_score(
        _detections(inputs, "flicker"),
        inputs.clip.indices,
        score_threshold=inputs.score_threshold,
        candidate_threshold=inputs.candidate_threshold,
        tracks=_tracks(inputs, "flicker"),
    )


def _temporal(inputs: TriggerInputs) -> TriggerResult:
    return temporal_score(
        _detections(inputs, "temporal"),
        inputs.clip.indices,
        score_threshold=inputs.score_threshold,
        tracks=_tracks(inputs, "temporal"),
    )


def _disagreement(inputs: TriggerInputs) -> TriggerResult:
    if inputs.reference_detections is None:
        raise ModelError(
            f"clip {inputs.clip.clip_id}: the disagreement trigger needs the detections of two models"
        )
    # Both models' boxes are capped alike, so a cap never counts as a disagreement.
    result = disagreement_score(
        _detections(inputs, "disagreement"),
        [strongest_boxes(d) for d in inputs.reference_detections],
        inputs.clip.indices,
        score_threshold=inputs.score_threshold,
    )
    result.details["reference_model_id"] = inputs.reference_model_id
    return result


def _rare_class(inputs: TriggerInputs) -> TriggerResult:
    if inputs.class_prior is None:
        raise ModelError(
            f"clip {inputs.clip.clip_id}: the rare_class trigger needs the class balance of the promoted "
            "model's training labels"
        )
    return rare_class_score(
        _detections(inputs, "rare_class"),
        inputs.clip.indices,
        class_prior=inputs.class_prior,
        class_names=inputs.class_names,
        score_threshold=inputs.score_threshold,
        tracks=_tracks(inputs, "rare_class"),
    )


def _stats(inputs: TriggerInputs) -> FrameStats:
    """The clip's image statistics, computed once and shared by the image triggers."""
    if "frame_stats" not in inputs.cache:
        inputs.cache["frame_stats"] = frame_stats(inputs.clip.frames)
    stats: FrameStats = inputs.cache["frame_stats"]
    return stats


#: The triggers that read the image statistics (:func:`frame_stats`).
IMAGE_TRIGGERS = frozenset({"brightness", "blur", "frozen", "scene_cut"})


def chunk_caches(clips: Sequence[ClipFrames], triggers: Sequence[Trigger]) -> list[dict[str, Any]]:
    """Per clip, the :attr:`TriggerInputs.cache` to start from: when an image trigger runs, the image
    statistics of all ``clips`` computed in one stacked pass (cheaper than one pass per clip), with the
    typical change between frames of each video among them (see :func:`frozen_score`)."""
    if not any(t.name in IMAGE_TRIGGERS for t in triggers):
        return [{} for _ in clips]
    stats = frame_stats_many([c.frames for c in clips], [c.video_id for c in clips])
    return [{"frame_stats": s} for s in stats]


def _anomaly(inputs: TriggerInputs) -> TriggerResult:
    if inputs.anomaly is None:
        raise ModelError(
            f"clip {inputs.clip.clip_id}: the anomaly trigger needs a trained anomaly autoencoder"
        )
    return inputs.anomaly(inputs.clip)


FLICKER = Trigger(
    name="flicker",
    needs_model=True,
    compute=_flicker,
    description="objects vanish for a few frames and return, appear once, or hover near the threshold",
)
TEMPORAL = Trigger(
    name="temporal",
    needs_model=True,
    compute=_temporal,
    description="within a track: class flips, box jumps, score oscillation",
)
DISAGREEMENT = Trigger(
    name="disagreement",
    needs_model=True,
    needs_previous_model=True,
    compute=_disagreement,
    description="the promoted and the reference model leave boxes unmatched at IoU 0.5 or disagree on class",
)
RARE_CLASS = Trigger(
    name="rare_class",
    needs_model=True,
    needs_class_prior=True,
    compute=_rare_class,
    description="a confident track of a class that is rare in the promoted model's training labels",
)
BRIGHTNESS = Trigger(
    name="brightness",
    needs_model=False,
    compute=lambda inputs: brightness_score(_stats(inputs), inputs.clip.indices),
    description="brightness jumps, too dark or too bright frames, flat contrast",
)
BLUR = Trigger(
    name="blur",
    needs_model=False,
    compute=lambda inputs: blur_score(_stats(inputs), inputs.clip.indices),
    description="frames much blurrier than the clip's sharpest (variance of the Laplacian)",
)
FROZEN = Trigger(
    name="frozen",
    needs_model=False,
    compute=lambda inputs: frozen_score(_stats(inputs), inputs.clip.indices),
    description="consecutive frames that are identical: a stuck camera",
)
SCENE_CUT = Trigger(
    name="scene_cut",
    needs_model=False,
    compute=lambda inputs: scene_cut_score(_stats(inputs), inputs.clip.indices),
    description="the luma histogram changes abruptly between consecutive frames",
)
ANOMALY = Trigger(
    name="anomaly",
    needs_model=False,
    needs_anomaly_model=True,
    compute=_anomaly,
    description="the clip's reconstruction-error percentile under an autoencoder trained on recent frames",
)
BUILTIN = (FLICKER, TEMPORAL, DISAGREEMENT, RARE_CLASS, BRIGHTNESS, BLUR, FROZEN, SCENE_CUT, ANOMALY)


def default_registry() -> TriggerRegistry:
    """A registry holding the built-in triggers, in the order that breaks score ties."""
    registry = TriggerRegistry()
    for trigger in BUILTIN:
        registry.register(trigger)
    return registry


#: The triggers :func:`dataengine.triggers.run_triggers` runs unless told otherwise; register more here.
TRIGGERS = default_registry()
