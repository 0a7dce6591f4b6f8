"""clip_event_days: events per (UTC day, stage, status, run), and a partial index on reviewed events

The monitoring funnel counted every event of its window (1.6M rows for a month at 1M clips, 2.3 s on
PostgreSQL); it now reads these counts, which the lineage writes keep in the same transaction as the
events. The models page reads every `reviewed` event: a partial index reaches them without the rest.
An existing database gets its counts computed from its events here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import re
from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clip_event_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("run_key", sa.Text(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "stage", "status", "run_key", name=op.f("pk_clip_event_days")),
    )
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    # The UTC day: SQLite holds the UTC time as text, PostgreSQL a timestamptz.
    day = "CAST(at AT TIME ZONE 'UTC' AS DATE)" if postgres else "date(at)"
    columns = f"{day}, stage, status, run_id"
    grouped = bind.execute(sa.text(f"SELECT {columns}, count(*) FROM clip_events GROUP BY {columns}"))
    # The run key drops a mapped task's index ("[3]"), as lineage.clips.day_run_key does; SQLite has
    # no regular expressions, so the few rows per day and run are merged here.
    counts: dict[tuple[str, str, str, str], int] = {}
    for day_value, stage, status, run_id, n in grouped:
        key = (str(day_value), stage, status, re.sub(r"\[\d+\]$", "", run_id or ""))
        counts[key] = counts.get(key, 0) + int(n)
    table = sa.table(
        "clip_event_days",
        sa.column("day", sa.Date()),
        sa.column("stage", sa.String()),
        sa.column("status", sa.String()),
        sa.column("run_key", sa.Text()),
        sa.column("events", sa.Integer()),
    )
    rows = [
        {"day": date.fromisoformat(d), "stage": stage, "status": status, "run_key": run_key, "events": n}
        for (d, stage, status, run_key), n in sorted(counts.items())
    ]
    for start in range(0, len(rows), 5000):
        bind.execute(table.insert(), rows[start : start + 5000])
    with op.batch_alter_table("clip_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clip_events_reviewed_clip_id",
            ["clip_id"],
            unique=False,
            postgresql_where=sa.text("stage = 'reviewed'"),
            sqlite_where=sa.text("stage = 'reviewed'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("clip_events", schema=None) as batch_op:
        batch_op.drop_index("ix_clip_events_reviewed_clip_id")
    op.drop_table("clip_event_days")
