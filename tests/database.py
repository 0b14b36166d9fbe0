"""What tests count in the database to check that nothing was stored, or stored once."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.tables import STATUSES, predictions


def count_by_status(*, conn: Connection) -> dict[str, int]:
    """Return how many observations are in each status."""
    rows = conn.execute(sa.select(predictions.c.status, sa.func.count()).group_by(predictions.c.status)).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(total) for status, total in rows})
    return counts


def count_rows(*, conn: Connection, observation_ids: Iterable[str] | None = None) -> int:
    """Return the number of stored observations (all, or among the given ids)."""
    query = sa.select(sa.func.count()).select_from(predictions)
    if observation_ids is not None:
        query = query.where(predictions.c.id.in_(list(observation_ids)))
    return int(conn.execute(query).scalar_one())
