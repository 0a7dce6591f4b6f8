"""SQLAlchemy 2 models of the lineage database (ARCHITECTURE §5). Alembic migrations mirror them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Clip stages in loop order, then the two side exits.
CLIP_STAGES = (
    "ingested",
    "scored",
    "selected",
    "autolabelled",
    "in_review",
    "reviewed",
    "in_dataset",
    "rejected",
    "quarantined",
)
MODEL_STATUSES = ("candidate", "promoted", "rejected", "retired")
MODEL_ORIGINS = ("trained", "imported")

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns timezone-aware datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} given to the lineage DB; use UTC-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    camera: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))  # ingesting, ingested, quarantined
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Clip(Base):
    __tablename__ = "clips"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id"), index=True)
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)  # exclusive
    start_time: Mapped[float] = mapped_column(Float)
    n_frames: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(Text)  # the clip's folder
    stage: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ClipEvent(Base):
    __tablename__ = "clip_events"
    # The models page reads every `reviewed` event (a few per hundred events): a partial index keeps
    # that read off the rest of the history and costs nothing on the writes of other stages.
    __table_args__ = (
        Index(
            "ix_clip_events_reviewed_clip_id",
            "clip_id",
            postgresql_where=text("stage = 'reviewed'"),
            sqlite_where=text("stage = 'reviewed'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # ok, skipped, failed, quarantined
    # Indexed for the monitoring UI: events of a time window (funnel) and of a run (budget line).
    run_id: Mapped[str | None] = mapped_column(Text, index=True)
    actor: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class ClipEventDay(Base):
    """How many ``clip_events`` each (UTC day, stage, status, run) has: the funnel's counts, kept in the
    transaction that writes the events (``lineage.clips``), so a page over a month of history reads a
    few thousand rows instead of every event of the month. ``run_key`` is the run id or ""."""

    __tablename__ = "clip_event_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    # Code-point order on every database, as Python orders run ids (SQLite's default is already so).
    run_key: Mapped[str] = mapped_column(
        Text().with_variant(Text(collation="C"), "postgresql"), primary_key=True
    )
    events: Mapped[int] = mapped_column(Integer)


# The funnel's busiest runs per day and stage (most events, then run key) are read in this order
# instead of sorting a month's counts (migration 0005).
Index(
    "ix_clip_event_days_ranked",
    ClipEventDay.day,
    ClipEventDay.stage,
    ClipEventDay.status,
    ClipEventDay.events.desc(),
    ClipEventDay.run_key,
)


class ClipReviewTotal(Base):
    """One clip's reviews of one producer model's autolabels, as the models page counts them: how many,
    the boxes reviewers changed and the boxes the model had proposed. Recomputed for a clip whenever a
    ``reviewed`` event or an annotation version of it is written (``lineage.review_totals``), in the
    same transaction; the difference goes to :class:`ModelReviewTotal`."""

    __tablename__ = "clip_review_totals"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True)
    # The producer's model id as the annotation names it: not a foreign key, the model may be unknown.
    model_id: Mapped[str] = mapped_column(Text, primary_key=True)
    reviews: Mapped[int] = mapped_column(Integer)
    boxes_changed: Mapped[int] = mapped_column(Integer)
    boxes_proposed: Mapped[int] = mapped_column(Integer)


class ModelReviewTotal(Base):
    """The sums of :class:`ClipReviewTotal` per model: the models page's edit rates, one row a model."""

    __tablename__ = "model_review_totals"

    model_id: Mapped[str] = mapped_column(Text, primary_key=True)
    reviews: Mapped[int] = mapped_column(Integer)
    boxes_changed: Mapped[int] = mapped_column(Integer)
    boxes_proposed: Mapped[int] = mapped_column(Integer)


class TriggerScore(Base):
    __tablename__ = "trigger_scores"
    __table_args__ = (UniqueConstraint("clip_id", "trigger", "model_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    frames: Mapped[list[int]] = mapped_column(JSONType, default=list)
    model_id: Mapped[str | None] = mapped_column(String(100))
    # model_id or "" : NULLs never collide in a unique constraint, so the key needs a non-null column.
    model_key: Mapped[str] = mapped_column(String(100), default="")
    run_id: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AnnotationVersion(Base):
    __tablename__ = "annotation_versions"
    __table_args__ = (UniqueConstraint("clip_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))
    parent_version: Mapped[int | None] = mapped_column(Integer)
    producer: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    n_frames: Mapped[int] = mapped_column(Integer)
    n_boxes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReviewTask(Base):
    __tablename__ = "review_tasks"
    __table_args__ = (UniqueConstraint("platform", "clip_id", "exported_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    platform: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # exported, imported, failed
    exported_version: Mapped[int] = mapped_column(Integer)
    imported_version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    exported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    imported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "{name}@{version}"
    name: Mapped[str] = mapped_column(String(150))
    version: Mapped[int] = mapped_column(Integer)
    manifest_uri: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DatasetClip(Base):
    __tablename__ = "dataset_clips"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True, index=True)
    annotation_version: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(20))


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    parent_model_id: Mapped[str | None] = mapped_column(String(100))
    checkpoint_uri: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: "trained" here, or "imported" (`dataengine model import`) from the file at source_uri.
    origin: Mapped[str] = mapped_column(String(20), default="trained", server_default="trained")
    source_uri: Mapped[str | None] = mapped_column(Text)
    source_sha256: Mapped[str | None] = mapped_column(String(64))


class QuarantineItem(Base):
    """Any input refused by a stage: a video, a clip, a label file. One row per (kind, input)."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("kind", "input"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # video, clip, annotation, label_export
    input: Mapped[str] = mapped_column(Text)
    video_id: Mapped[str | None] = mapped_column(String(16), index=True)
    clip_id: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
