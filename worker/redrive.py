"""Re-publish observations still queued long after their last publish (broker emptied, publish failed)."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.engine import Engine

from core.publishing import held_messages, publish_to_lanes, waiting_in_lanes
from core.settings import Settings
from core.storage.observations import claim_stale_queued

log = logging.getLogger(__name__)


def republish_stale(*, engine: Engine, celery: Celery, settings: Settings) -> int:
    """Publish again every observation queued REDRIVE_AFTER_S after its last publish; return how many.

    While messages wait in the queue, or workers hold some unacknowledged, the workers are behind rather than
    missing work, and copies would only lengthen the backlog: then only rows older than REDRIVE_BACKLOG_CAP_S
    are published again, so a lost message never waits longer than that behind a backlog of any length.
    Either lane counts: one backlog decides for both. Each row goes back to its own lane.
    """
    waiting = sum(waiting_in_lanes(celery, settings).values())
    held = held_messages(celery, settings.lane_queues, settings.broker_management_url)
    # A count the broker does not give (RabbitMQ without its management API) is taken as some held.
    behind = bool(waiting) or held is None or held > 0
    older_than_s = settings.redrive_backlog_cap_s if behind else settings.redrive_after_s
    with engine.begin() as conn:
        stale = claim_stale_queued(conn=conn, older_than_s=older_than_s, limit=settings.redrive_limit)
        # Publishing inside the transaction: if it fails, published_at rolls back and the next
        # run tries again; if the commit fails after publishing, a duplicate message is harmless.
        publish_to_lanes(celery, stale, settings=settings, per_message=settings.batch_size)
    if stale:
        log.warning(
            "redrove stale observations",
            extra={"count": len(stale), "waiting": waiting, "held": held, "older_than_s": older_than_s},
        )
    elif behind:
        log.info("redrive: workers behind, nothing over the cap", extra={"waiting": waiting, "held": held})
    return len(stale)
