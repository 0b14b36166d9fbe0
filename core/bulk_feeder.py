"""Feed the bulk lane a few slices at a time, uploads taking turns, instead of publishing whole batches.

An upload's rows wait in the database; the broker's bulk queue holds at most BULK_FEED_WINDOW messages. Each
time there is room (after an upload commits, after a worker finishes a bulk micro-batch, on the redrive's
tick) the next slices are chosen by turns: the highest priority first, and within a priority one slice per
share per round (a share is an API key's uploads, or one batch when keys are off), starting with the share fed
least recently. A 10,000-row upload sent behind a million-row one therefore waits for a window's worth of
slices, not for the million rows.

A slice is claimed in the database and published in one transaction: a failed publish rolls the claim back,
and two feeders never publish the same slice (the claim moves the batch's next position only from where it
read it).
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from celery import Celery
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from core.publishing import PUBLISH_ERRORS, publish_message, waiting_messages
from core.settings import Settings
from core.storage.batches import FeedingBatch, claim_slice, feeding_batches
from core.storage.records import BatchSlice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedSlice:
    """The next slice of a batch, as a feeder read it: positions first to last; following is where the batch's
    next position moves to (None: that was its last slice)."""

    batch_id: str
    first: int
    last: int
    following: int | None

    @property
    def slice(self) -> BatchSlice:
        """Return the slice a message refers to."""
        return BatchSlice(self.batch_id, self.first, self.last)


def plan_slices(batches: Sequence[FeedingBatch], *, budget: int, per_message: int) -> list[PlannedSlice]:
    """Return up to budget slices in the order they are fed: priorities from the highest; within one, a slice
    per share per round, the share fed least recently first; within a share, its oldest batch first."""
    planned: list[PlannedSlice] = []
    positions = {batch.id: batch.next_position for batch in batches}
    for priority in sorted({batch.priority for batch in batches}, reverse=True):
        shares: dict[str, deque[FeedingBatch]] = defaultdict(deque)
        for batch in sorted(batches, key=lambda b: (b.created_at, b.id)):
            if batch.priority == priority:
                shares[batch.share].append(batch)
        turns = deque(sorted(shares.values(), key=_last_fed))
        while turns and len(planned) < budget:
            share = turns.popleft()
            batch = share[0]
            first = positions[batch.id]
            end = min(first + per_message, batch.items)
            following = end if end < batch.items else None
            planned.append(PlannedSlice(batch.id, first, end - 1, following))
            if following is None:
                share.popleft()
            else:
                positions[batch.id] = following
            if share:
                turns.append(share)
        if len(planned) >= budget:
            break
    return planned


def _last_fed(share: deque[FeedingBatch]) -> tuple[datetime, datetime]:
    """Sort key of a share: when any of its batches was last fed (a batch never fed counts from its
    creation, so a new upload's turn comes first), then its oldest batch's creation."""
    fed = [
        batch.fed_at if batch.fed_at is not None and batch.next_position > 0 else batch.created_at
        for batch in share
    ]
    return max(fed), share[0].created_at


def feed_bulk_lane(*, engine: Engine, celery: Celery, settings: Settings) -> int:
    """Publish the next slices while the bulk queue holds fewer than BULK_FEED_WINDOW messages; return how
    many were published. Never raises for a broker or database that is down: the next call feeds instead."""
    try:
        room = settings.bulk_feed_window - waiting_messages(celery, settings.bulk_queue)
        if room <= 0:
            return 0
        with engine.connect() as conn:
            batches = feeding_batches(conn=conn)
    except (*PUBLISH_ERRORS, OperationalError):
        log.warning("bulk feeding skipped: broker or database unreachable", exc_info=True)
        return 0
    fed = 0
    for planned in plan_slices(batches, budget=room, per_message=settings.bulk_rows_per_message):
        try:
            with engine.begin() as conn:
                if not claim_slice(
                    conn=conn, batch_id=planned.batch_id, first=planned.first, following=planned.following
                ):
                    continue  # another feeder took it
                publish_message(celery, queue=settings.bulk_queue, slices=[planned.slice])
        except (*PUBLISH_ERRORS, OperationalError):
            log.warning("bulk feeding stopped: broker or database unreachable", exc_info=True)
            break
        fed += 1
    return fed
