"""monitor_snapshots: the model monitor's figures over time; indexes for windows and live labels

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_s", sa.Integer, nullable=False),
        sa.Column("figure", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("observations", sa.Integer, nullable=False),
    )
    op.create_index("monitor_snapshots_by_time", "monitor_snapshots", ["taken_at"])
    op.create_index("predictions_by_received_at", "predictions", ["received_at"])
    op.create_index(
        "predictions_labelled_by_version",
        "predictions",
        ["model_version", "prediction", "true_class"],
        postgresql_where=sa.text("true_class IS NOT NULL"),
        sqlite_where=sa.text("true_class IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("predictions_labelled_by_version", table_name="predictions")
    op.drop_index("predictions_by_received_at", table_name="predictions")
    op.drop_index("monitor_snapshots_by_time", table_name="monitor_snapshots")
    op.drop_table("monitor_snapshots")
