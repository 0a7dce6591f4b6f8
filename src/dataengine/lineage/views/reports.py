"""The CLI's reports: status, one clip's history, the quarantine list (the JSON shapes of ARCHITECTURE §7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.lineage.annotations import annotation_versions
from dataengine.lineage.clips import clip_events, get_clip
from dataengine.lineage.datasets import clip_datasets
from dataengine.lineage.model_registry import list_models, promoted_model
from dataengine.lineage.models import CLIP_STAGES, Clip, QuarantineItem, Video
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.triggers import trigger_scores


def clip_to_dict(clip: Clip) -> dict[str, Any]:
    """The ``clips list`` form of a clip."""
    return {
        "clip_id": clip.id,
        "video_id": clip.video_id,
        "start_frame": clip.start_frame,
        "end_frame": clip.end_frame,
        "n_frames": clip.n_frames,
        "start_time": clip.start_time,
        "stage": clip.stage,
        "uri": clip.uri,
        "updated_at": clip.updated_at.isoformat(),
    }


def status_summary(session: Session) -> dict[str, Any]:
    """Counts of videos, clips per stage, quarantined inputs, and the models."""
    stages = dict.fromkeys(CLIP_STAGES, 0)
    for stage, count in session.execute(select(Clip.stage, func.count()).group_by(Clip.stage)):
        stages[stage] = count
    n_videos = session.scalar(select(func.count()).select_from(Video)) or 0
    n_quarantined = session.scalar(select(func.count()).select_from(QuarantineItem)) or 0
    models = [
        {
            "id": model.id,
            "status": model.status,
            "dataset_id": model.dataset_id,
            "parent_model_id": model.parent_model_id,
            "metrics": model.metrics,
            "created_at": model.created_at.isoformat(),
        }
        for model in list_models(session)
    ]
    promoted = promoted_model(session)
    return {
        "videos": n_videos,
        "clips": sum(stages.values()),
        "quarantined": n_quarantined,
        "stages": stages,
        "models": models,
        "promoted_model": promoted.id if promoted else None,
    }


def clip_history(session: Session, clip_id: str) -> dict[str, Any]:
    """One clip's whole history: the clip, its events, annotation versions, triggers and"""
    clip = get_clip(session, clip_id)
    return {
        "clip": clip_to_dict(clip),
        "events": [
            {
                "stage": e.stage,
                "status": e.status,
                "at": e.at.isoformat(),
                "run_id": e.run_id,
                "actor": e.actor,
                "details": e.details,
            }
            for e in clip_events(session, clip_id)
        ],
        "annotations": [
            {
                "version": a.version,
                "source": a.source,
                "uri": a.uri,
                "n_boxes": a.n_boxes,
                "n_frames": a.n_frames,
                "parent_version": a.parent_version,
                "producer": a.producer,
            }
            for a in annotation_versions(session, clip_id)
        ],
        "triggers": [
            {"trigger": t.trigger, "score": t.score, "model_id": t.model_id, "frames": t.frames}
            for t in trigger_scores(session, clip_id)
        ],
        "datasets": [
            {
                "dataset_id": d.dataset_id,
                "annotation_version": d.annotation_version,
                "split": d.split,
            }
            for d in clip_datasets(session, clip_id)
        ],
    }


def quarantine_list(session: Session) -> list[dict[str, Any]]:
    """The ``quarantine list`` form: every refused input and why."""
    return [
        {
            "input": item.input,
            "video_id": item.video_id,
            "clip_id": item.clip_id,
            "kind": item.kind,
            "stage": item.stage,
            "reason": item.reason,
            "at": item.at.isoformat(),
        }
        for item in list_quarantine(session)
    ]
