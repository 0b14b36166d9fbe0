"""Shadow mode: the rollout's shadow version, and the predictions it made beside the serving ones

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIONS_BEFORE = "action IN ('canary', 'promote', 'rollback', 'set')"
ACTIONS = "action IN ('canary', 'promote', 'rollback', 'set', 'shadow', 'shadow_off')"


def upgrade() -> None:
    with op.batch_alter_table("model_rollout") as table:
        table.add_column(sa.Column("shadow_version", sa.String(64)))
        table.create_check_constraint(
            "model_rollout_shadow_not_serving",
            "shadow_version IS NULL OR (shadow_version <> stable_version"
            " AND (canary_version IS NULL OR shadow_version <> canary_version))",
        )
    with op.batch_alter_table("model_rollout_events") as table:
        table.add_column(sa.Column("shadow_version", sa.String(64)))
        table.drop_constraint("model_rollout_events_action_known", type_="check")
        table.create_check_constraint("model_rollout_events_action_known", ACTIONS)
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("proba", sa.Float, nullable=False),
        sa.Column("prediction", sa.Boolean, nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("shadow_predictions_by_predicted_at", "shadow_predictions", ["predicted_at"])


def downgrade() -> None:
    op.drop_index("shadow_predictions_by_predicted_at", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
    op.execute("DELETE FROM model_rollout_events WHERE action IN ('shadow', 'shadow_off')")
    with op.batch_alter_table("model_rollout_events") as table:
        table.drop_constraint("model_rollout_events_action_known", type_="check")
        table.create_check_constraint("model_rollout_events_action_known", ACTIONS_BEFORE)
        table.drop_column("shadow_version")
    with op.batch_alter_table("model_rollout") as table:
        table.drop_constraint("model_rollout_shadow_not_serving", type_="check")
        table.drop_column("shadow_version")
