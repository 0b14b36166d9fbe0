"""Per-key rate limits on submissions (429 with Retry-After), counted in Redis across gateway processes.

The `limits` library keeps the counters: a sliding window counter, two Redis integers per key and window
whatever the rate, updated by one Lua script call. Redis (REDIS_URL, or the broker when it is Redis) holds
them, so the gunicorn workers of a gateway (and several gateways on one Redis) share each key's allowance;
with no Redis each process counts on its own. If Redis cannot answer, submissions are let through
(logged): the database is the source of truth and the redrive publishes what was accepted, so a Redis
outage must not stop intake.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from core.settings import Settings
from gateway.errors import ApiError

log = logging.getLogger(__name__)
# After Redis failed to answer, submissions go uncounted this long before it is asked again, so that a
# Redis that hangs costs one timeout every few seconds, not one per request.
UNCOUNTED_AFTER_FAILURE_S = 5.0
REDIS_TIMEOUT_S = 0.5


class SubmissionLimits:
    """Count each key's submissions (requests) and batch items; refuse past either limit."""

    def __init__(self, settings: Settings) -> None:
        if settings.shared_redis_url is not None:
            storage = storage_from_string(
                settings.shared_redis_url,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
        else:
            storage = storage_from_string("memory://", wrap_exceptions=True)
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._requests = parse(settings.rate_limit_submissions) if settings.rate_limit_submissions else None
        self._items = parse(settings.rate_limit_batch_items) if settings.rate_limit_batch_items else None
        # The queue names the deployment: two stacks on one Redis (as the tests run) count apart.
        self._namespace = settings.queue_name
        self._lock = threading.Lock()
        self._uncounted_until = 0.0

    def charge_submission(self, key_name: str) -> None:
        """Count one submission of this key; raise 429 when it is over its limit (nothing is stored)."""
        if self._requests is not None:
            self._charge(self._requests, "submissions", key_name, 1)

    def charge_batch_items(self, key_name: str, items: int) -> None:
        """Count a batch's items against this key's allowance; raise 429 when it is over (nothing stored)."""
        if self._items is not None:
            self._charge(self._items, "batch items", key_name, items)

    def _charge(self, limit: RateLimitItem, what: str, key_name: str, cost: int) -> None:
        """Count cost against the key's limit; raise 429 with Retry-After when it does not fit."""
        if time.monotonic() < self._uncounted_until:
            return
        identifiers = (self._namespace, what.replace(" ", "_"), key_name)
        try:
            if self._limiter.hit(limit, *identifiers, cost=cost):
                return
            reset_at = self._limiter.get_window_stats(limit, *identifiers).reset_time
        except StorageError:
            self._stop_counting_for_a_while()
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(
            429,
            f"Too many {what} for API key {key_name!r} (at most {limit.amount} per "
            f"{_window(limit)}); retry in {retry_after} s.",
            retry_after_s=retry_after,
        )

    def _stop_counting_for_a_while(self) -> None:
        """Let submissions through uncounted for a few seconds, saying so once."""
        with self._lock:
            if time.monotonic() >= self._uncounted_until:
                log.warning(
                    "rate limits: Redis did not answer; submissions go uncounted for %.0f s",
                    UNCOUNTED_AFTER_FAILURE_S,
                    exc_info=True,
                )
                self._uncounted_until = time.monotonic() + UNCOUNTED_AFTER_FAILURE_S


def _window(limit: RateLimitItem) -> str:
    """Return the window of a limit in words: "second", "10 minutes"."""
    unit = limit.GRANULARITY.name
    return unit if limit.multiples == 1 else f"{limit.multiples} {unit}s"
