"""index clip_events by time and by run

The monitoring UI asks for the events of a time window (the funnel) and of a run (the budget line of
the trigger timeline); without these indexes both scan the whole append-only event table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clip_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clip_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_clip_events_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("clip_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clip_events_run_id"))
        batch_op.drop_index(batch_op.f("ix_clip_events_at"))
