"""Drop predictions_by_batch: no query reads a batch's rows through predictions any more

Bulk messages refer to slices of batch_items (read by its primary key), so the gateway no longer reads a batch's
queued rows back to publish them; the index only cost every insert and update of a row.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("predictions_by_batch", table_name="predictions")


def downgrade() -> None:
    op.create_index("predictions_by_batch", "predictions", ["batch_id", "status"])
