"""What operators read: the backlog (the model's figures: monitoring.py; the bench's: measurement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.records import as_utc_or_none
from core.storage.tables import FAILED, QUEUED, predictions

# The lanes work travels in: a single submission's row (no batch) on the interactive one, a batch's on bulk.
INTERACTIVE, BULK = "interactive", "bulk"
LANES = (INTERACTIVE, BULK)


@dataclass(frozen=True)
class LaneBacklog:
    """What waits in one lane: how many rows, and when the oldest of them arrived."""

    queued: int = 0
    oldest_queued_at: datetime | None = None


@dataclass(frozen=True)
class Backlog:
    """What waits, per lane, and what failed: the figures operators alert on."""

    lanes: dict[str, LaneBacklog]
    failed: int

    @property
    def queued(self) -> int:
        """Return how many rows wait in either lane."""
        return sum(lane.queued for lane in self.lanes.values())

    @property
    def oldest_queued_at(self) -> datetime | None:
        """Return when the oldest row waiting in either lane arrived."""
        return min(
            (lane.oldest_queued_at for lane in self.lanes.values() if lane.oldest_queued_at), default=None
        )


def backlog(*, conn: Connection) -> Backlog:
    """Return the queued rows of each lane with the arrival of its oldest, and the failed count.

    It reads every queued and failed row (found through the status index): cheap while the backlog is what a
    healthy service has; an alert fires long before it is not.
    """
    lane = sa.case((predictions.c.batch_id.is_(None), INTERACTIVE), else_=BULK)
    rows = conn.execute(
        sa.select(predictions.c.status, lane, sa.func.count(), sa.func.min(predictions.c.received_at))
        .where(predictions.c.status.in_((QUEUED, FAILED)))
        .group_by(predictions.c.status, lane)
    ).all()
    lanes = dict.fromkeys(LANES, LaneBacklog())
    failed = 0
    for status, name, count, oldest in rows:
        if status == QUEUED:
            lanes[name] = LaneBacklog(queued=int(count), oldest_queued_at=as_utc_or_none(oldest))
        else:
            failed += int(count)
    return Backlog(lanes=lanes, failed=failed)
