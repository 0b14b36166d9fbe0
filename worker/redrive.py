"""Re-publish observations still queued long after their last publish (broker emptied, publish failed)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery
from sqlalchemy.engine import Engine

from core.publishing import publish_observations, waiting_messages
from core.settings import Settings
from core.storage.observations import claim_stale_queued
from core.storage.records import utc_now

log = logging.getLogger(__name__)


def republish_stale(*, engine: Engine, celery: Celery, settings: Settings) -> int:
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
