"""models: where a model came from (trained here or imported) and its source file's sha256

A team can bring its own detector (`dataengine model import`); lineage keeps which file it was.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        origin = sa.Column("origin", sa.String(length=20), nullable=False, server_default="trained")
        batch_op.add_column(origin)
        batch_op.add_column(sa.Column("source_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("source_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("source_sha256")
        batch_op.drop_column("source_uri")
        batch_op.drop_column("origin")
