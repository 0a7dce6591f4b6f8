"""Deprecated re-export of the lineage aggregates, kept for one step while callers move.

Import from the aggregate modules instead: ``lineage.videos``, ``lineage.clips``, ``lineage.quarantine``,
``lineage.triggers``, ``lineage.annotations``, ``lineage.reviews``, ``lineage.datasets`` and
``lineage.model_registry``; reports and pages read through ``lineage.views``.
"""

from dataengine.lineage.annotations import (
    annotation_versions,
    latest_annotation,
    record_annotation,
)
from dataengine.lineage.clips import (
    clip_events,
    clips_ever_in_stage,
    get_clip,
    list_clips,
    recently_ingested,
    record_event,
    register_clip,
    set_stage,
)
from dataengine.lineage.datasets import (
    TrainableClip,
    clip_datasets,
    create_dataset,
    dataset_by_id,
    dataset_id,
    dataset_members,
    earlier_splits,
    get_dataset,
    manifest_registered,
    next_dataset_version,
    trainable_clips,
)
from dataengine.lineage.model_registry import (
    find_model,
    get_model,
    list_models,
    models_trained_on,
    promoted_model,
    register_model,
    set_model_status,
)
from dataengine.lineage.quarantine import (
    list_quarantine,
    quarantine,
)
from dataengine.lineage.reviews import (
    find_task,
    finish_review_task,
    review_tasks,
    upsert_review_task,
)
from dataengine.lineage.triggers import (
    record_trigger_score,
    trigger_scores,
)
from dataengine.lineage.videos import (
    cameras_of,
    get_video,
    list_videos,
    register_video,
)

__all__ = [
    "TrainableClip",
    "annotation_versions",
    "cameras_of",
    "clip_datasets",
    "clip_events",
    "clips_ever_in_stage",
    "create_dataset",
    "dataset_by_id",
    "dataset_id",
    "dataset_members",
    "earlier_splits",
    "find_model",
    "find_task",
    "finish_review_task",
    "get_clip",
    "get_dataset",
    "get_model",
    "get_video",
    "latest_annotation",
    "list_clips",
    "list_models",
    "list_quarantine",
    "list_videos",
    "manifest_registered",
    "models_trained_on",
    "next_dataset_version",
    "promoted_model",
    "quarantine",
    "recently_ingested",
    "record_annotation",
    "record_event",
    "record_trigger_score",
    "register_clip",
    "register_model",
    "register_video",
    "review_tasks",
    "set_model_status",
    "set_stage",
    "trainable_clips",
    "trigger_scores",
    "upsert_review_task",
]
