"""model_rollout: what serves (stable version, canary and its share), its audit trail; rows' accepted_version

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows stored before this revision were accepted by whichever bundle was current, unrecorded.
    with op.batch_alter_table("predictions") as table:
        table.add_column(sa.Column("accepted_version", sa.String(64), nullable=True))
    op.create_table(
        "model_rollout",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stable_version", sa.String(64), nullable=False),
        sa.Column("canary_version", sa.String(64)),
        sa.Column("canary_percent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64)),
        sa.CheckConstraint("id = 1", name="model_rollout_single_row"),
        sa.CheckConstraint("canary_percent BETWEEN 0 AND 100", name="model_rollout_percent_range"),
        sa.CheckConstraint(
            "canary_percent = 0 OR canary_version IS NOT NULL", name="model_rollout_share_has_canary"
        ),
        sa.CheckConstraint(
            "canary_version IS NULL OR canary_version <> stable_version",
            name="model_rollout_canary_not_stable",
        ),
    )
    op.create_table(
        "model_rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("stable_version", sa.String(64), nullable=False),
        sa.Column("canary_version", sa.String(64)),
        sa.Column("canary_percent", sa.Integer, nullable=False),
        sa.Column("by", sa.String(64)),
        sa.CheckConstraint(
            "action IN ('canary', 'promote', 'rollback', 'set')", name="model_rollout_events_action_known"
        ),
    )


def downgrade() -> None:
    op.drop_table("model_rollout_events")
    op.drop_table("model_rollout")
    with op.batch_alter_table("predictions") as table:
        table.drop_column("accepted_version")
