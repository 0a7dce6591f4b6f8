"""The built-in triggers and the default registry that :func:`run_triggers` uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dataengine.errors import ModelError
from dataengine.triggers.base import (
    ClipFrames,
    Trigger,
    TriggerFunction,
    TriggerInputs,
    TriggerRegistry,
    TriggerResult,
)
from dataengine.triggers.chunk_signals import (
    disagreement_many,
    flicker_many,
    image_results_many,
    link_chunk,
    rare_class_many,
    stack_detections,
    temporal_many,
    uniform_score_type,
)
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


def _same(values: Sequence[object]) -> bool:
    return all(v == values[0] for v in values[1:])


def chunk_results(
    inputs: Sequence[TriggerInputs], triggers: Sequence[Trigger]
) -> list[dict[str, TriggerResult]]:
    """Per clip, the results of the built-in triggers among ``triggers`` other than anomaly (flicker,
    temporal, rare_class, disagreement and the four image triggers), computed for every clip at once
    (:mod:`~dataengine.triggers.chunk_signals`): the same results as their ``compute`` on each clip.
    A trigger is left out, for its ``compute`` to run clip by clip and raise what it raises, when some
    clip lacks its inputs (image statistics in the cache, detections) or has a list of the wrong length,
    or when the clips differ in thresholds or class balance."""
    image = {t.compute: t.name for t in (BRIGHTNESS, BLUR, FROZEN, SCENE_CUT)}
    wanted = {t.compute for t in triggers} & {_flicker, _temporal, _rare_class, _disagreement, *image}
    out: list[dict[str, TriggerResult]] = [{} for _ in inputs]
    if not wanted or not inputs:
        return out
    found: dict[TriggerFunction, list[TriggerResult]] = {}
    if wanted & set(image) and all(_has_stats(i) for i in inputs):
        by_name = image_results_many(
            [i.cache["frame_stats"] for i in inputs], [i.clip.indices for i in inputs]
        )
        found.update({compute: by_name[name] for compute, name in image.items()})
    first = inputs[0]
    if not (
        _same([i.score_threshold for i in inputs])
        and _same([i.candidate_threshold for i in inputs])
        and all(i.detections is not None and len(i.detections) == len(i.clip.indices) for i in inputs)
    ):
        return _fill(out, triggers, found)
    promoted = [[strongest_boxes(d) for d in i.detections or []] for i in inputs]
    if not uniform_score_type(promoted):
        return _fill(out, triggers, found)
    indices = [i.clip.indices for i in inputs]
    det = stack_detections(promoted)
    threshold = first.score_threshold
    if wanted & {_flicker, _temporal, _rare_class}:
        tracks = link_chunk(det)
        if _flicker in wanted:
            found[_flicker] = flicker_many(
                det, tracks, indices, score_threshold=threshold, candidate_threshold=first.candidate_threshold
            )
        if _temporal in wanted:
            found[_temporal] = temporal_many(det, tracks, indices, score_threshold=threshold)
        if (
            _rare_class in wanted
            and first.class_prior is not None
            and _same([i.class_prior for i in inputs])
            and _same([i.class_names for i in inputs])
        ):
            found[_rare_class] = rare_class_many(
                det, tracks, indices, class_prior=first.class_prior, class_names=first.class_names,
                score_threshold=threshold,
            )  # fmt: skip
    if _disagreement in wanted and all(
        i.reference_detections is not None and len(i.reference_detections) == len(i.clip.indices)
        for i in inputs
    ):
        reference = [[strongest_boxes(d) for d in i.reference_detections or []] for i in inputs]
        if uniform_score_type(reference):
            results = disagreement_many(det, stack_detections(reference), indices, score_threshold=threshold)
            for i, result in zip(inputs, results, strict=True):
                result.details["reference_model_id"] = i.reference_model_id
            found[_disagreement] = results
    return _fill(out, triggers, found)


def _fill(
    out: list[dict[str, TriggerResult]],
    triggers: Sequence[Trigger],
    found: dict[TriggerFunction, list[TriggerResult]],
) -> list[dict[str, TriggerResult]]:
    """``out`` with each clip's results of the ``triggers`` whose compute function was ``found``."""
    for trigger in triggers:
        if trigger.compute in found:
            for clip_results, result in zip(out, found[trigger.compute], strict=True):
                clip_results[trigger.name] = result
    return out


def _has_stats(inputs: TriggerInputs) -> bool:
    """Whether the clip's image statistics are in its cache, one value per frame (and transition)."""
    stats = inputs.cache.get("frame_stats")
    if not isinstance(stats, FrameStats):
        return False
    n = len(inputs.clip.indices)
    per_frame = (stats.mean_luma, stats.contrast, stats.sharpness)
    steps = (stats.frame_change, stats.histogram_change)
    return all(len(v) == n for v in per_frame) and all(len(v) == max(n - 1, 0) for v in steps)


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
