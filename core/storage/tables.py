"""The service's tables: predictions, batches and their items, API keys, monitor snapshots, model rollout."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.rollout.state import ROLLOUT_ACTIONS

QUEUED, DONE, FAILED = "queued", "done", "failed"
STATUSES = (QUEUED, DONE, FAILED)

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("observation", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("proba", sa.Float),
    sa.Column("prediction", sa.Boolean),
    sa.Column("model_version", sa.String(64)),
    # The bundle version whose feature spec accepted the row (none on rows stored before rollouts existed);
    # model_version is the one that predicted it.
    sa.Column("accepted_version", sa.String(64)),
    sa.Column("failure_reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("true_class", sa.Boolean),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("predicted_at", sa.DateTime(timezone=True)),
    sa.Column("labelled_at", sa.DateTime(timezone=True)),
    # The bulk submission that created the row, if any.
    sa.Column("batch_id", sa.String(64)),
    sa.CheckConstraint(f"status IN {STATUSES!r}", name="predictions_status_known"),
    sa.Index("predictions_queued_by_publish_time", "status", "published_at"),
    sa.Index("predictions_by_received_at", "received_at"),
    sa.Index(
        "predictions_labelled_by_version",
        "model_version",
        "prediction",
        "true_class",
        postgresql_where=sa.text("true_class IS NOT NULL"),
        sqlite_where=sa.text("true_class IS NOT NULL"),
    ),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("accepted", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    # When the gateway committed the batch, then when a slice of its rows was last fed to the bulk lane (the
    # database's clock).
    sa.Column("published_at", sa.DateTime(timezone=True)),
    # The first item position not yet fed to the bulk lane; NULL once all are (core/bulk_feeder.py).
    sa.Column("next_position", sa.Integer),
    # Whose turn it is: uploads of one share (an API key; the batch itself when keys are off) take turns with
    # other shares' slice by slice. A higher priority is fed first.
    sa.Column("share_key", sa.String(64)),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Index(
        "batches_feeding",
        "priority",
        postgresql_where=sa.text("next_position IS NOT NULL"),
        sqlite_where=sa.text("next_position IS NOT NULL"),
    ),
)

# One row per accepted item of a batch, in submission order; a replayed id points at the existing row.
batch_items = sa.Table(
    "batch_items",
    metadata,
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("observation_id", sa.String(128), sa.ForeignKey("predictions.id"), nullable=False),
    sa.Index("batch_items_by_observation", "observation_id"),
)


# Every item of a batch that was not accepted: its position, the id it claimed (if any) and its errors.
batch_rejections = sa.Table(
    "batch_rejections",
    metadata,
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("observation_id", sa.Text),
    sa.Column("errors", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
)

# Who may call the API: a key is stored only as its SHA-256 (why that suffices: core/api_keys.py).
# A revoked key keeps its row and its name, so the name of a key in old logs always means that one key.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # The key's first characters, shown to humans to tell keys apart; too few to guess the rest from.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
    # Comma-separated, sorted: submit, read, label, admin.
    sa.Column("scopes", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


# What the model monitor measured at each run: one row per figure and subject (PSI of a feature, PSI of the
# probabilities, the positive-call share of a model version), over the window_s before taken_at.
monitor_snapshots = sa.Table(
    "monitor_snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_s", sa.Integer, nullable=False),
    sa.Column("figure", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("observations", sa.Integer, nullable=False),
    sa.Index("monitor_snapshots_by_time", "taken_at"),
)


# What serves (core.rollout.state.Rollout): a single row, id 1. Its checks keep every row a valid Rollout.
model_rollout = sa.Table(
    "model_rollout",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("stable_version", sa.String(64), nullable=False),
    sa.Column("canary_version", sa.String(64)),
    sa.Column("canary_percent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The name of the API key that made the last change, if a key made it.
    sa.Column("updated_by", sa.String(64)),
    sa.CheckConstraint("id = 1", name="model_rollout_single_row"),
    sa.CheckConstraint("canary_percent BETWEEN 0 AND 100", name="model_rollout_percent_range"),
    sa.CheckConstraint(
        "canary_percent = 0 OR canary_version IS NOT NULL", name="model_rollout_share_has_canary"
    ),
    sa.CheckConstraint(
        "canary_version IS NULL OR canary_version <> stable_version", name="model_rollout_canary_not_stable"
    ),
    # A version that predicts beside the serving ones and serves nothing (shadow mode).
    sa.Column("shadow_version", sa.String(64)),
    sa.CheckConstraint(
        "shadow_version IS NULL OR (shadow_version <> stable_version"
        " AND (canary_version IS NULL OR shadow_version <> canary_version))",
        name="model_rollout_shadow_not_serving",
    ),
)

# Every change of the rollout, oldest first: what was done, by whom, and the rollout it left.
model_rollout_events = sa.Table(
    "model_rollout_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("stable_version", sa.String(64), nullable=False),
    sa.Column("canary_version", sa.String(64)),
    sa.Column("canary_percent", sa.Integer, nullable=False),
    sa.Column("by", sa.String(64)),
    sa.CheckConstraint(f"action IN {ROLLOUT_ACTIONS!r}", name="model_rollout_events_action_known"),
    sa.Column("shadow_version", sa.String(64)),
)

# What the shadow version predicted for an observation, beside the version that served it; never served.
# Purged by its own age, as the observations are (RETENTION_DAYS).
shadow_predictions = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("model_version", sa.String(64), primary_key=True),
    sa.Column("proba", sa.Float, nullable=False),
    sa.Column("prediction", sa.Boolean, nullable=False),
    sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("shadow_predictions_by_predicted_at", "predicted_at"),
)


def insert_predictions(*, conn: Connection) -> Any:
    """Return an INSERT into predictions in the connection's dialect (both support ON CONFLICT DO NOTHING)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(predictions)
    return sqlite.insert(predictions)
