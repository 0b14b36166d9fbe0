"""Retention: delete finished observations and batches older than RETENTION_DAYS, in bounded chunks.

Queued rows are never touched, nor a row a batch still points at; each chunk is its own short transaction,
so the purge never holds many locks or a long transaction beside the service's own writes.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.clock import database_time_ago
from core.storage.tables import DONE, FAILED, QUEUED, batch_items, batch_rejections, batches, predictions


def purge_finished_batches(*, conn: Connection, older_than_s: float, limit: int) -> int:
    """Delete up to limit rows of the oldest expired batch (created before the cutoff, nothing queued).

    Its items and rejections go limit rows at a time (positions are dense), then the batch itself; returns
    the rows deleted, 0 once no batch has expired.
    """
    cutoff = database_time_ago(conn=conn, seconds=older_than_s)
    still_queued = (
        sa.select(batch_items.c.batch_id)
        .join(predictions, predictions.c.id == batch_items.c.observation_id)
        .where(batch_items.c.batch_id == batches.c.id, predictions.c.status == QUEUED)
    )
    batch_id = conn.execute(
        sa.select(batches.c.id)
        .where(batches.c.created_at < cutoff, ~sa.exists(still_queued))
        .order_by(batches.c.created_at)
        .limit(1)
    ).scalar()
    if batch_id is None:
        return 0
    for table in (batch_rejections, batch_items):
        lowest = conn.execute(
            sa.select(sa.func.min(table.c.position)).where(table.c.batch_id == batch_id)
        ).scalar()
        if lowest is not None:
            deleted = conn.execute(
                table.delete().where(table.c.batch_id == batch_id, table.c.position < lowest + limit)
            )
            return int(deleted.rowcount)
    return int(conn.execute(batches.delete().where(batches.c.id == batch_id)).rowcount)


def purge_finished_predictions(*, conn: Connection, older_than_s: float, limit: int) -> int:
    """Delete up to limit finished observations received before the cutoff that no batch points at."""
    cutoff = database_time_ago(conn=conn, seconds=older_than_s)
    expired = (
        sa.select(predictions.c.id)
        .where(
            predictions.c.status.in_((DONE, FAILED)),
            predictions.c.received_at < cutoff,
            ~sa.exists(
                sa.select(batch_items.c.observation_id).where(
                    batch_items.c.observation_id == predictions.c.id
                )
            ),
        )
        .limit(limit)
        .scalar_subquery()
    )
    return int(conn.execute(predictions.delete().where(predictions.c.id.in_(expired))).rowcount)
