"""The periodic purge of what RETENTION_DAYS no longer keeps: chunk by chunk, within a time budget per run."""

from __future__ import annotations

import logging
import time

from sqlalchemy.engine import Engine

from core.settings import Settings
from core.storage.retention import purge_finished_batches, purge_finished_predictions
from core.storage.shadow import purge_shadow_predictions

log = logging.getLogger(__name__)
SECONDS_PER_DAY = 86_400


def purge_expired_rows(*, engine: Engine, settings: Settings) -> int:
    """Delete expired batches, finished observations and shadow predictions; return the rows deleted.

    Each chunk of RETENTION_CHUNK_ROWS is its own transaction; a run stops after RETENTION_BUDGET_S and
    the next one goes on where it stopped.
    """
    if settings.retention_days <= 0:
        return 0
    older_than_s = settings.retention_days * SECONDS_PER_DAY
    deadline = time.monotonic() + settings.retention_budget_s
    deleted = 0
    for purge in (purge_finished_batches, purge_finished_predictions, purge_shadow_predictions):
        while time.monotonic() < deadline:
            with engine.begin() as conn:
                rows = purge(conn=conn, older_than_s=older_than_s, limit=settings.retention_chunk_rows)
            deleted += rows
            if rows == 0:
                break
    if deleted:
        log.info("expired rows purged", extra={"rows": deleted, "retention_days": settings.retention_days})
    return deleted
