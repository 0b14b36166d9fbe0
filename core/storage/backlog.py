"""What operators read: the backlog (the model's figures: monitoring.py; the bench's: measurement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.records import as_utc_or_none
from core.storage.tables import FAILED, QUEUED, predictions


@dataclass(frozen=True)
class Backlog:
    """What waits and what failed: the figures operators alert on."""

    queued: int
    failed: int
    oldest_queued_at: datetime | None


def backlog(*, conn: Connection) -> Backlog:
    """Return the queued and failed counts and when the oldest queued observation arrived.

    It reads every queued and failed row (found through the status index): cheap while the backlog is what a
    healthy service has; an alert fires long before it is not.
    """
    rows = conn.execute(
        sa.select(predictions.c.status, sa.func.count(), sa.func.min(predictions.c.received_at))
        .where(predictions.c.status.in_((QUEUED, FAILED)))
        .group_by(predictions.c.status)
    ).all()
    found = {status: (int(count), oldest) for status, count, oldest in rows}
    queued, oldest = found.get(QUEUED, (0, None))
    failed, _ = found.get(FAILED, (0, None))
    return Backlog(queued=queued, failed=failed, oldest_queued_at=as_utc_or_none(oldest))
