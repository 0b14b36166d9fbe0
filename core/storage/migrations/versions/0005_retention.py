"""Index batch items by observation: the retention purge keeps every row a batch still points at

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("batch_items_by_observation", "batch_items", ["observation_id"])


def downgrade() -> None:
    op.drop_index("batch_items_by_observation", table_name="batch_items")
