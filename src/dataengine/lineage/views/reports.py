"""The CLI's reports: status, one clip's history, the quarantine list (the JSON shapes of ARCHITECTURE §7)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from dataengine.lineage.annotations import annotation_versions
from dataengine.lineage.clips import clip_events, get_clip
from dataengine.lineage.datasets import clip_datasets
from dataengine.lineage.model_registry import list_models, promoted_model
from dataengine.lineage.models import (
    CLIP_STAGES,
    AnnotationVersion,
    Clip,
    ClipEvent,
    DatasetClip,
    QuarantineItem,
    TriggerScore,
    Video,
)
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
    """One clip's whole history: the clip, its events, annotation versions, triggers and datasets.

    On PostgreSQL in one statement (the four lists as ``json_agg`` subqueries of the clip's row: one
    round trip instead of five); elsewhere five indexed queries (:func:`clip_history_by_rows`). Both
    give the same dict, value for value."""
    if session.get_bind().dialect.name != "postgresql":
        return clip_history_by_rows(session, clip_id)
    row = session.execute(_history_statement(clip_id)).one_or_none()
    if row is None:
        get_clip(session, clip_id)  # raises NotFoundError, as the portable path does
        raise AssertionError("unreachable: the clip was not found")
    clip, events, annotations, triggers, datasets = row
    return {
        "clip": clip_to_dict(clip),
        "events": [
            {
                "stage": stage,
                "status": status,
                # As the ORM reads the column (UTCDateTime): the UTC time, timezone-aware.
                "at": datetime.fromisoformat(at).replace(tzinfo=UTC).isoformat(),
                "run_id": run_id,
                "actor": actor,
                "details": details,
            }
            for stage, status, at, run_id, actor, details in events or []
        ],
        "annotations": [
            {
                "version": version,
                "source": source,
                "uri": uri,
                "n_boxes": n_boxes,
                "n_frames": n_frames,
                "parent_version": parent_version,
                "producer": producer,
            }
            for version, source, uri, n_boxes, n_frames, parent_version, producer in annotations or []
        ],
        "triggers": [
            # JSON has no NaN or infinity: PostgreSQL writes those floats as strings.
            {"trigger": trigger, "score": float(score), "model_id": model_id, "frames": frames}
            for trigger, score, model_id, frames in triggers or []
        ],
        "datasets": [
            {"dataset_id": dataset_id, "annotation_version": version, "split": split}
            for dataset_id, version, split in datasets or []
        ],
    }


def _history_statement(clip_id: str) -> Any:
    """The clip's row with its four child lists, each a JSON array of arrays in the portable path's
    order (a correlated subquery per list, each by its ``clip_id`` index)."""

    def rows(order_by: Any, *columns: Any) -> Any:
        table = order_by.table
        return (
            select(func.json_agg(aggregate_order_by(func.json_build_array(*columns), order_by)))
            .where(table.c.clip_id == Clip.id)
            .scalar_subquery()
        )

    events = ClipEvent.__table__.c
    versions = AnnotationVersion.__table__.c
    scores = TriggerScore.__table__.c
    members = DatasetClip.__table__.c
    return select(
        Clip,
        # The UTC time without its zone, so that the session's time zone cannot change the text.
        rows(events.id, events.stage, events.status, func.timezone("UTC", events.at), events.run_id,
             events.actor, events.details),
        rows(versions.version, versions.version, versions.source, versions.uri, versions.n_boxes,
             versions.n_frames, versions.parent_version, versions.producer),
        rows(scores.id, scores.trigger, scores.score, scores.model_id, scores.frames),
        rows(members.dataset_id, members.dataset_id, members.annotation_version, members.split),
    ).where(Clip.id == clip_id)  # fmt: skip


def clip_history_by_rows(session: Session, clip_id: str) -> dict[str, Any]:
    """:func:`clip_history` by five queries of ORM rows (every database; SQLite's path)."""
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


def quarantine_list(session: Session, *, last: int | None = None) -> list[dict[str, Any]]:
    """The ``quarantine list`` form: every refused input and why, oldest first (only the ``last``
    ones when given)."""
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
        for item in list_quarantine(session, last=last)
    ]
