"""initial lineage schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=150), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest_uri", sa.Text(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_datasets_name_version")),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("video_id", sa.String(length=16), nullable=True),
        sa.Column("clip_id", sa.String(length=24), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("kind", "input", name=op.f("uq_quarantine_kind_input")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_video_id"), ["video_id"], unique=False)

    op.create_table(
        "videos",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("camera", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("sha256", name=op.f("uq_videos_sha256")),
    )
    op.create_table(
        "clips",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("video_id", sa.String(length=16), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("end_frame", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["video_id"], ["videos.id"], name=op.f("fk_clips_video_id_videos")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clips")),
    )
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clips_stage"), ["stage"], unique=False)
        batch_op.create_index(batch_op.f("ix_clips_video_id"), ["video_id"], unique=False)

    op.create_table(
        "models",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("dataset_id", sa.String(length=200), nullable=True),
        sa.Column("parent_model_id", sa.String(length=100), nullable=True),
        sa.Column("checkpoint_uri", sa.Text(), nullable=False),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_models_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_models_status"), ["status"], unique=False)

    op.create_table(
        "annotation_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clip_id", sa.String(length=24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column(
            "producer",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("n_boxes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_annotation_versions_clip_id_clips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_versions")),
        sa.UniqueConstraint("clip_id", "version", name=op.f("uq_annotation_versions_clip_id_version")),
    )
    with op.batch_alter_table("annotation_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotation_versions_clip_id"), ["clip_id"], unique=False)

    op.create_table(
        "clip_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clip_id", sa.String(length=24), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_clip_events_clip_id_clips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clip_events")),
    )
    with op.batch_alter_table("clip_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clip_events_clip_id"), ["clip_id"], unique=False)

    op.create_table(
        "dataset_clips",
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("clip_id", sa.String(length=24), nullable=False),
        sa.Column("annotation_version", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_dataset_clips_clip_id_clips")),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_clips_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "clip_id", name=op.f("pk_dataset_clips")),
    )
    with op.batch_alter_table("dataset_clips", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_clips_clip_id"), ["clip_id"], unique=False)

    op.create_table(
        "review_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clip_id", sa.String(length=24), nullable=False),
        sa.Column("platform", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("exported_version", sa.Integer(), nullable=False),
        sa.Column("imported_version", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_review_tasks_clip_id_clips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_tasks")),
        sa.UniqueConstraint(
            "platform",
            "clip_id",
            "exported_version",
            name=op.f("uq_review_tasks_platform_clip_id_exported_version"),
        ),
    )
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_tasks_clip_id"), ["clip_id"], unique=False)

    op.create_table(
        "trigger_scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clip_id", sa.String(length=24), nullable=False),
        sa.Column("trigger", sa.String(length=100), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column(
            "frames",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("model_id", sa.String(length=100), nullable=True),
        sa.Column("model_key", sa.String(length=100), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_trigger_scores_clip_id_clips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_scores")),
        sa.UniqueConstraint(
            "clip_id",
            "trigger",
            "model_key",
            name=op.f("uq_trigger_scores_clip_id_trigger_model_key"),
        ),
    )
    with op.batch_alter_table("trigger_scores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trigger_scores_clip_id"), ["clip_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("trigger_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trigger_scores_clip_id"))

    op.drop_table("trigger_scores")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_tasks_clip_id"))

    op.drop_table("review_tasks")
    with op.batch_alter_table("dataset_clips", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_clips_clip_id"))

    op.drop_table("dataset_clips")
    with op.batch_alter_table("clip_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clip_events_clip_id"))

    op.drop_table("clip_events")
    with op.batch_alter_table("annotation_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_versions_clip_id"))

    op.drop_table("annotation_versions")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_models_status"))

    op.drop_table("models")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clips_video_id"))
        batch_op.drop_index(batch_op.f("ix_clips_stage"))

    op.drop_table("clips")
    op.drop_table("videos")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_video_id"))

    op.drop_table("quarantine")
    op.drop_table("datasets")
