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


def redrive_stale(*, engine: Engine, celery: Celery, settings: Settings) -> int:
    """Publish again every observation queued for longer than REDRIVE_AFTER_S; return how many."""
    now = utc_now()
    with engine.begin() as conn:
        stale = claim_stale_queued(
            conn,
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
