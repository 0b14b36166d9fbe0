"""Add bulk submissions: batches, their items in submission order, and the batch that created a row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
    )
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("observation_id", sa.String(128), sa.ForeignKey("predictions.id"), nullable=False),
    )
    with op.batch_alter_table("predictions") as table:
        table.add_column(sa.Column("batch_id", sa.String(64), nullable=True))
        table.create_index("predictions_by_batch", ["batch_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as table:
        table.drop_index("predictions_by_batch")
        table.drop_column("batch_id")
    op.drop_table("batch_items")
    op.drop_table("batches")
