"""batches.next_position, share_key, priority: the bulk lane is fed a few slices at a time, fairly between uploads

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        # Batches stored before this were published whole: none is left to feed (NULL).
        batch.add_column(sa.Column("next_position", sa.Integer, nullable=True))
        batch.add_column(sa.Column("share_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"))
    op.create_index(
        "batches_feeding",
        "batches",
        ["priority"],
        postgresql_where=sa.text("next_position IS NOT NULL"),
        sqlite_where=sa.text("next_position IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("batches_feeding", table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("priority")
        batch.drop_column("share_key")
        batch.drop_column("next_position")
