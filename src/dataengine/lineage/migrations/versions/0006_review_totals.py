"""clip_review_totals and model_review_totals: the models page's review counts, kept by the writes

The models page summed every counted review (40,000 at 1M clips: each joined to two annotation
versions and grouped by producer, ~1 s on PostgreSQL); it now reads one row per model, which the
lineage writes keep in the same transaction as the reviews (``lineage.review_totals``). An existing
database gets its totals computed here, with the page's former query (written out below as it stood,
so that later changes of the package do not change what this revision computes).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TOTALS = ("reviews", "boxes_changed", "boxes_proposed")


def upgrade() -> None:
    op.create_table(
        "clip_review_totals",
        sa.Column("clip_id", sa.String(length=24), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _TOTALS),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_clip_review_totals_clip_id_clips")),
        sa.PrimaryKeyConstraint("clip_id", "model_id", name=op.f("pk_clip_review_totals")),
    )
    op.create_table(
        "model_review_totals",
        sa.Column("model_id", sa.Text(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _TOTALS),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_model_review_totals")),
    )
    bind = op.get_bind()
    sums: dict[tuple[str, str], list[int]] = {}
    for clip_id, producer, n_reviews, n_boxes, n_changed in bind.execute(_former_query()):
        for model_id in (producer or {}).get("models", []):
            entry = sums.setdefault((clip_id, str(model_id)), [0, 0, 0])
            entry[0] += int(n_reviews)
            entry[1] += int(n_changed or 0)
            entry[2] += int(n_boxes or 0)
    per_clip = sa.table("clip_review_totals", *(sa.column(n) for n in ("clip_id", "model_id", *_TOTALS)))
    rows = [
        {"clip_id": c, "model_id": m, "reviews": r, "boxes_changed": ch, "boxes_proposed": p}
        for (c, m), (r, ch, p) in sorted(sums.items())
    ]
    for start in range(0, len(rows), 5000):
        bind.execute(per_clip.insert(), rows[start : start + 5000])
    per_model: dict[str, list[int]] = {}
    for (_, model_id), values in sums.items():
        entry = per_model.setdefault(model_id, [0, 0, 0])
        for i, value in enumerate(values):
            entry[i] += value
    if per_model:
        table = sa.table("model_review_totals", *(sa.column(n) for n in ("model_id", *_TOTALS)))
        bind.execute(
            table.insert(),
            [
                {"model_id": m, "reviews": r, "boxes_changed": ch, "boxes_proposed": p}
                for m, (r, ch, p) in sorted(per_model.items())
            ],
        )


def _former_query() -> Any:
    """The models page's query of revision 0005, per clip: (clip, producer, reviews, boxes, changed)."""
    events = sa.table(
        "clip_events",
        sa.column("clip_id", sa.String()),
        sa.column("stage", sa.String()),
        sa.column("status", sa.String()),
        sa.column("details", _JSON),
    )
    versions = sa.table(
        "annotation_versions",
        sa.column("clip_id", sa.String()),
        sa.column("version", sa.Integer()),
        sa.column("source", sa.String()),
        sa.column("parent_version", sa.Integer()),
        sa.column("producer", _JSON),
        sa.column("n_boxes", sa.Integer()),
    )
    reviewed = (
        sa.select(
            events.c.clip_id,
            events.c.details["version"].as_integer().label("version"),
            events.c.details["boxes_changed"].as_integer().label("changed"),
        )
        .where(
            events.c.clip_id.in_(sa.select(versions.c.clip_id).where(versions.c.source == "review")),
            events.c.stage == "reviewed",
            events.c.status == "ok",
        )
        .subquery()
    )
    review, parent = versions.alias("review"), versions.alias("parent")
    return (
        sa.select(
            reviewed.c.clip_id,
            parent.c.producer,
            sa.func.count(),
            sa.func.sum(parent.c.n_boxes),
            sa.func.sum(reviewed.c.changed),
        )
        .select_from(reviewed)
        .join(review, sa.and_(review.c.clip_id == reviewed.c.clip_id, review.c.version == reviewed.c.version))
        .join(
            parent, sa.and_(parent.c.clip_id == review.c.clip_id, parent.c.version == review.c.parent_version)
        )
        .group_by(reviewed.c.clip_id, parent.c.producer)
    )


def downgrade() -> None:
    op.drop_table("model_review_totals")
    op.drop_table("clip_review_totals")
