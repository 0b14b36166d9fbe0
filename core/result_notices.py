"""Tell the gateways which observations are finished, so long-polls answer at once: Redis pub/sub.

Redis carries them whatever the broker: REDIS_URL, or the broker when it is Redis (shared_redis_url).
Best effort: a notice lost (Redis restarting, or no Redis configured) only makes a long-poll answer at its
deadline, from the database as always.

Two kinds of notice: a JSON list of finished observations (those a message carried itself: singles, and rows
the redrive sent again), at most MAX_IDS_PER_NOTICE ids each, since every gateway process reads every notice;
and {"batches": [...]}, the batches whose slices a micro-batch worked through. A slice of an upload is
announced by its batch, not row by row: a long-poll on one of its rows asks again on its batch's notice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence

import redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

MAX_IDS_PER_NOTICE = 1000
# The key of a notice of batches' progress.
BATCHES = "batches"


def notices_channel(queue_name: str) -> str:
    """Return the pub/sub channel on which the workers of queue_name announce finished observations."""
    return f"{queue_name}.finished"


class FinishedNotices:
    """The workers' side: publish the ids of a batch once its results are committed."""

    def __init__(self, redis_url: str | None, queue_name: str) -> None:
        self._client = (
            redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1) if redis_url else None
        )
        self._channel = notices_channel(queue_name)

    def announce(self, observation_ids: Sequence[str], batch_ids: Collection[str] = ()) -> None:
        """Publish that these observations are finished (done or failed), MAX_IDS_PER_NOTICE to a notice, and
        that these batches made progress, in one round trip; never raise."""
        if self._client is None or not (observation_ids or batch_ids):
            return
        pipeline = self._client.pipeline(transaction=False)
        for start in range(0, len(observation_ids), MAX_IDS_PER_NOTICE):
            chunk = observation_ids[start : start + MAX_IDS_PER_NOTICE]
            pipeline.publish(self._channel, json.dumps(list(chunk)))
        if batch_ids:
            pipeline.publish(self._channel, json.dumps({BATCHES: sorted(batch_ids)}))
        try:
            pipeline.execute()
        except RedisError:
            log.debug("finished notice not published", exc_info=True)
