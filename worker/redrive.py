"""Re-publish observations still queued long after their last publish (broker emptied, publish failed)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery
from sqlalchemy.engine import Engine

from worker.publishing import publish_observations
from worker.settings import Settings
from worker.storage import claim_stale_queued, utc_now

log = logging.getLogger(__name__)


def waiting_messages(celery: Celery, queue_name: str) -> int:
    """Return how many messages wait in the broker queue (not counting those workers hold unacked)."""
    with celery.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue_name, passive=True)
        except connection.channel_errors:
            return 0  # never declared (a broker restarted empty): nothing waits
    return int(declared.message_count)


def redrive_stale(*, engine: Engine, celery: Celery, settings: Settings) -> int:
    """Publish again every observation queued for longer than REDRIVE_AFTER_S; return how many.

    While messages still wait in the queue the workers are only behind, not missing work: republishing then
    would only pile copies on the backlog, so the redrive waits for the queue to drain.
    """
    backlog = waiting_messages(celery, settings.queue_name)
    if backlog:
        log.info("redrive skipped: the queue still holds messages", extra={"waiting": backlog})
        return 0
    now = utc_now()
    with engine.begin() as conn:
        stale = claim_stale_queued(
            conn=conn,
            published_before=now - timedelta(seconds=settings.redrive_after_s),
            now=now,
            limit=settings.redrive_limit,
        )
        # Publishing inside the transaction: if it fails, published_at rolls back and the next
        # run tries again; if the commit fails after publishing, a duplicate message is harmless.
        publish_observations(celery, stale, per_message=settings.batch_size)
    if stale:
        log.warning("redrove stale observations", extra={"count": len(stale)})
    return len(stale)
