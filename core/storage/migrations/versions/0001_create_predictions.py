"""Create the predictions table.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
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
        "predictions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("observation", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proba", sa.Float),
        sa.Column("prediction", sa.Boolean),
        sa.Column("model_version", sa.String(64)),
        sa.Column("failure_reason", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("true_class", sa.Boolean),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True)),
        sa.Column("labelled_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('queued', 'done', 'failed')", name="predictions_status_known"),
    )
    op.create_index("predictions_queued_by_publish_time", "predictions", ["status", "published_at"])


def downgrade() -> None:
    op.drop_index("predictions_queued_by_publish_time", table_name="predictions")
    op.drop_table("predictions")
