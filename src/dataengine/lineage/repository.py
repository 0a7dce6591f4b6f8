"""Repository functions over the lineage tables. Each takes an open session; the caller commits.

Every write is an upsert keyed by a deterministic id, so a rerun of a stage adds no duplicate rows.
Every stage change of a clip writes its ``clip_events`` row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage.models import (
    CLIP_STAGES,
    MODEL_STATUSES,
    AnnotationVersion,
    Clip,
    ClipEvent,
    Dataset,
    DatasetClip,
    Model,
    QuarantineItem,
    ReviewTask,
    TriggerScore,
    Video,
    utcnow,
)

# Videos ---------------------------------------------------------------------------------------


def get_video(session: Session, video_id: str) -> Video | None:
    """The video with ``video_id``, if registered."""
    return session.get(Video, video_id)


def register_video(
    session: Session,
    *,
    video_id: str,
    uri: str,
    sha256: str,
    status: str = "ingesting",
    camera: str | None = None,
    recorded_at: datetime | None = None,
    duration: float | None = None,
    fps: float | None = None,
    width: int | None = None,
    height: int | None = None,
    error: str | None = None,
) -> Video:
    """Insert or update the video row keyed by ``video_id``."""
    video = session.get(Video, video_id)
    if video is None:
        video = Video(id=video_id, sha256=sha256)
        session.add(video)
    elif video.sha256 != sha256:
        raise LineageError(f"video id {video_id} is registered with another sha256 ({video.sha256})")
    video.uri = uri
    video.status = status
    video.camera = camera
    video.recorded_at = recorded_at
    video.duration = duration
    video.fps = fps
    video.width = width
    video.height = height
    video.error = error
    session.flush()
    return video


def list_videos(session: Session, *, status: str | None = None) -> list[Video]:
    """Videos, optionally only those with ``status``, ordered by id."""
    query = select(Video).order_by(Video.id)
    if status is not None:
        query = query.where(Video.status == status)
    return list(session.scalars(query))


# Clips ----------------------------------------------------------------------------------------


def get_clip(session: Session, clip_id: str) -> Clip:
    """The clip with ``clip_id``; raises :class:`NotFoundError` when unknown."""
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFoundError(f"no clip {clip_id!r} in the lineage database; see `dataengine clips list`")
    return clip


def register_clip(
    session: Session,
    *,
    clip_id: str,
    video_id: str,
    start_frame: int,
    end_frame: int,
    start_time: float,
    n_frames: int,
    uri: str,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[Clip, bool]:
    """Register a newly ingested clip; returns ``(clip, created)``. An existing clip is left as it is."""
    clip = session.get(Clip, clip_id)
    if clip is not None:
        return clip, False
    clip = Clip(
        id=clip_id,
        video_id=video_id,
        start_frame=start_frame,
        end_frame=end_frame,
        start_time=start_time,
        n_frames=n_frames,
        uri=uri,
        stage="ingested",
    )
    session.add(clip)
    session.flush()
    _add_event(session, clip_id, "ingested", "ok", run_id, actor, details)
    return clip, True


def _add_event(
    session: Session,
    clip_id: str,
    stage: str,
    status: str,
    run_id: str | None,
    actor: str | None,
    details: dict[str, Any] | None,
) -> ClipEvent:
    event = ClipEvent(
        clip_id=clip_id,
        stage=stage,
        status=status,
        run_id=run_id,
        actor=actor,
        details=details or {},
        at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def set_stage(
    session: Session,
    clip_id: str,
    stage: str,
    *,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ClipEvent:
    """Move a clip to ``stage`` and append the event that says so."""
    if stage not in CLIP_STAGES:
        raise LineageError(f"unknown clip stage {stage!r}; stages are {', '.join(CLIP_STAGES)}")
    clip = get_clip(session, clip_id)
    clip.stage = stage
    clip.updated_at = utcnow()
    return _add_event(session, clip_id, stage, "ok", run_id, actor, details)


def record_event(
    session: Session,
    clip_id: str,
    stage: str,
    *,
    status: str,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ClipEvent:
    """Append an event without changing the clip's stage (a failure, a skip, a training run)."""
    get_clip(session, clip_id)
    return _add_event(session, clip_id, stage, status, run_id, actor, details)


def list_clips(
    session: Session,
    *,
    stage: str | Sequence[str] | None = None,
    video_id: str | None = None,
    clip_ids: Iterable[str] | None = None,
) -> list[Clip]:
    """Clips filtered by stage(s), video or ids, ordered by id."""
    query = select(Clip).order_by(Clip.id)
    if isinstance(stage, str):
        query = query.where(Clip.stage == stage)
    elif stage is not None:
        query = query.where(Clip.stage.in_(list(stage)))
    if video_id is not None:
        query = query.where(Clip.video_id == video_id)
    if clip_ids is not None:
        query = query.where(Clip.id.in_(list(clip_ids)))
    return list(session.scalars(query))


def clip_events(session: Session, clip_id: str) -> list[ClipEvent]:
    """A clip's events, oldest first."""
    query = select(ClipEvent).where(ClipEvent.clip_id == clip_id).order_by(ClipEvent.id)
    return list(session.scalars(query))


# Quarantine -----------------------------------------------------------------------------------


def quarantine(
    session: Session,
    *,
    kind: str,
    input: str,
    reason: str,
    stage: str,
    video_id: str | None = None,
    clip_id: str | None = None,
    run_id: str | None = None,
) -> QuarantineItem:
    """Record a refused input; a quarantined clip moves to stage ``quarantined``."""
    item = session.scalars(
        select(QuarantineItem).where(QuarantineItem.kind == kind, QuarantineItem.input == input)
    ).one_or_none()
    if item is None:
        item = QuarantineItem(kind=kind, input=input)
        session.add(item)
    item.reason = reason
    item.stage = stage
    item.video_id = video_id
    item.clip_id = clip_id
    item.run_id = run_id
    item.at = utcnow()
    session.flush()
    if clip_id is not None and session.get(Clip, clip_id) is not None:
        set_stage(
            session,
            clip_id,
            "quarantined",
            run_id=run_id,
            details={"stage": stage, "reason": reason},
        )
    return item


def list_quarantine(session: Session) -> list[QuarantineItem]:
    """Every quarantined input, oldest first."""
    return list(session.scalars(select(QuarantineItem).order_by(QuarantineItem.id)))


# Triggers -------------------------------------------------------------------------------------


def record_trigger_score(
    session: Session,
    *,
    clip_id: str,
    trigger: str,
    score: float,
    frames: Sequence[int] = (),
    model_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> TriggerScore:
    """Insert or replace the score of one trigger (and model) on one clip."""
    key = model_id or ""
    row = session.scalars(
        select(TriggerScore).where(
            TriggerScore.clip_id == clip_id,
            TriggerScore.trigger == trigger,
            TriggerScore.model_key == key,
        )
    ).one_or_none()
    if row is None:
        row = TriggerScore(clip_id=clip_id, trigger=trigger, model_key=key)
        session.add(row)
    row.score = float(score)
    row.frames = [int(f) for f in frames]
    row.model_id = model_id
    row.run_id = run_id
    row.details = details or {}
    row.created_at = utcnow()
    session.flush()
    return row


def trigger_scores(session: Session, clip_id: str) -> list[TriggerScore]:
    """Every trigger score of a clip."""
    query = select(TriggerScore).where(TriggerScore.clip_id == clip_id).order_by(TriggerScore.id)
    return list(session.scalars(query))


# Annotations ----------------------------------------------------------------------------------


def record_annotation(
    session: Session,
    *,
    clip_id: str,
    version: int,
    uri: str,
    sha256: str,
    source: str,
    parent_version: int | None,
    producer: dict[str, Any],
    n_frames: int,
    n_boxes: int,
) -> tuple[AnnotationVersion, bool]:
    """Register an annotation file; returns ``(row, created)``. Same version, other bytes: an error."""
    row = session.scalars(
        select(AnnotationVersion).where(
            AnnotationVersion.clip_id == clip_id, AnnotationVersion.version == version
        )
    ).one_or_none()
    if row is not None:
        if row.sha256 != sha256:
            raise LineageError(
                f"annotation {clip_id} v{version} is registered with sha256 {row.sha256}, not {sha256}; "
                "annotation versions are immutable"
            )
        return row, False
    row = AnnotationVersion(
        clip_id=clip_id,
        version=version,
        uri=uri,
        sha256=sha256,
        source=source,
        parent_version=parent_version,
        producer=producer,
        n_frames=n_frames,
        n_boxes=n_boxes,
    )
    session.add(row)
    session.flush()
    return row, True


def annotation_versions(session: Session, clip_id: str) -> list[AnnotationVersion]:
    """A clip's annotation versions, oldest first."""
    query = (
        select(AnnotationVersion)
        .where(AnnotationVersion.clip_id == clip_id)
        .order_by(AnnotationVersion.version)
    )
    return list(session.scalars(query))


def latest_annotation(
    session: Session, clip_id: str, *, sources: Sequence[str] | None = None
) -> AnnotationVersion | None:
    """The newest annotation version of a clip, optionally only from ``sources``."""
    query = select(AnnotationVersion).where(AnnotationVersion.clip_id == clip_id)
    if sources is not None:
        query = query.where(AnnotationVersion.source.in_(list(sources)))
    return session.scalars(query.order_by(AnnotationVersion.version.desc()).limit(1)).one_or_none()


# Review tasks ---------------------------------------------------------------------------------


def upsert_review_task(
    session: Session,
    *,
    clip_id: str,
    platform: str,
    exported_version: int,
    external_id: str | None,
) -> tuple[ReviewTask, bool]:
    """The review task of a clip version on a platform; returns ``(task, created)``."""
    task = session.scalars(
        select(ReviewTask).where(
            ReviewTask.platform == platform,
            ReviewTask.clip_id == clip_id,
            ReviewTask.exported_version == exported_version,
        )
    ).one_or_none()
    if task is not None:
        if external_id is not None:
            task.external_id = external_id
        return task, False
    task = ReviewTask(
        clip_id=clip_id,
        platform=platform,
        exported_version=exported_version,
        external_id=external_id,
        status="exported",
        exported_at=utcnow(),
    )
    session.add(task)
    session.flush()
    return task, True


def review_tasks(
    session: Session, *, platform: str | None = None, status: str | None = None
) -> list[ReviewTask]:
    """Review tasks filtered by platform and status, oldest first."""
    query = select(ReviewTask).order_by(ReviewTask.id)
    if platform is not None:
        query = query.where(ReviewTask.platform == platform)
    if status is not None:
        query = query.where(ReviewTask.status == status)
    return list(session.scalars(query))


def finish_review_task(
    session: Session, task: ReviewTask, *, imported_version: int | None, error: str | None = None
) -> None:
    """Mark a task imported (with the version it produced) or failed (with the error)."""
    task.status = "failed" if error else "imported"
    task.imported_version = imported_version
    task.error = error
    task.imported_at = utcnow()
    session.flush()


# Datasets -------------------------------------------------------------------------------------


def dataset_id(name: str, version: int) -> str:
    """The id of a dataset version: ``name@version``."""
    return f"{name}@{version}"


def get_dataset(session: Session, name: str, version: int | None = None) -> Dataset:
    """A dataset version, the newest unless ``version`` is given."""
    query = select(Dataset).where(Dataset.name == name)
    if version is not None:
        query = query.where(Dataset.version == version)
    dataset = session.scalars(query.order_by(Dataset.version.desc()).limit(1)).one_or_none()
    if dataset is None:
        wanted = name if version is None else dataset_id(name, version)
        raise NotFoundError(f"no dataset {wanted!r}; build one with `dataengine dataset build`")
    return dataset


def next_dataset_version(session: Session, name: str) -> int:
    """The version number the next snapshot of ``name`` gets."""
    current = session.scalar(select(func.max(Dataset.version)).where(Dataset.name == name))
    return (current or 0) + 1


def create_dataset(
    session: Session,
    *,
    name: str,
    version: int,
    manifest_uri: str,
    manifest_sha256: str,
    counts: dict[str, Any],
    members: Iterable[tuple[str, int, str]],
) -> Dataset:
    """Register a dataset version and its ``(clip_id, annotation_version, split)`` members."""
    ident = dataset_id(name, version)
    if session.get(Dataset, ident) is not None:
        raise LineageError(f"dataset {ident} exists already; dataset versions are immutable")
    dataset = Dataset(
        id=ident,
        name=name,
        version=version,
        manifest_uri=manifest_uri,
        manifest_sha256=manifest_sha256,
        counts=counts,
    )
    session.add(dataset)
    session.flush()
    session.add_all(
        DatasetClip(dataset_id=ident, clip_id=clip_id, annotation_version=ann_version, split=split)
        for clip_id, ann_version, split in members
    )
    session.flush()
    return dataset


def dataset_members(session: Session, dataset_id_: str) -> list[DatasetClip]:
    """The clips of a dataset version, by clip id."""
    query = select(DatasetClip).where(DatasetClip.dataset_id == dataset_id_).order_by(DatasetClip.clip_id)
    return list(session.scalars(query))


def clip_datasets(session: Session, clip_id: str) -> list[DatasetClip]:
    """The dataset versions a clip is in."""
    query = select(DatasetClip).where(DatasetClip.clip_id == clip_id).order_by(DatasetClip.dataset_id)
    return list(session.scalars(query))


# Models ---------------------------------------------------------------------------------------


def register_model(
    session: Session,
    *,
    model_id: str,
    checkpoint_uri: str,
    dataset_id: str | None,
    parent_model_id: str | None,
    metrics: dict[str, Any] | None = None,
    status: str = "candidate",
) -> Model:
    """Insert or update a model row."""
    if status not in MODEL_STATUSES:
        raise LineageError(f"unknown model status {status!r}; statuses are {', '.join(MODEL_STATUSES)}")
    model = session.get(Model, model_id)
    if model is None:
        model = Model(id=model_id, status=status, created_at=utcnow())
        session.add(model)
    model.checkpoint_uri = checkpoint_uri
    model.dataset_id = dataset_id
    model.parent_model_id = parent_model_id
    model.metrics = metrics or {}
    model.status = status if model.status != "promoted" else model.status
    session.flush()
    return model


def get_model(session: Session, model_id: str) -> Model:
    """The model with ``model_id``; raises :class:`NotFoundError` when unknown."""
    model = session.get(Model, model_id)
    if model is None:
        raise NotFoundError(f"no model {model_id!r} in the lineage database")
    return model


def promoted_model(session: Session) -> Model | None:
    """The model in production: the most recently promoted one."""
    query = select(Model).where(Model.status == "promoted").order_by(Model.promoted_at.desc()).limit(1)
    return session.scalars(query).one_or_none()


def set_model_status(
    session: Session, model_id: str, status: str, *, metrics: dict[str, Any] | None = None
) -> Model:
    """Promote or reject a model. Promoting one retires the model promoted before it."""
    if status not in MODEL_STATUSES:
        raise LineageError(f"unknown model status {status!r}; statuses are {', '.join(MODEL_STATUSES)}")
    model = get_model(session, model_id)
    if status == "promoted" and model.status != "promoted":
        for other in session.scalars(select(Model).where(Model.status == "promoted")):
            other.status = "retired"
        model.promoted_at = utcnow()
    model.status = status
    if metrics is not None:
        model.metrics = metrics
    session.flush()
    return model


def list_models(session: Session) -> list[Model]:
    """Every model, oldest first."""
    return list(session.scalars(select(Model).order_by(Model.created_at, Model.id)))
