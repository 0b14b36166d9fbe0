"""The per-process cache of API key lookups: the hot path stays off the database."""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Engine

from core.api_keys import key_digest
from core.storage.api_keys import ApiKeyRecord, find_api_key

# Past this many cached lookups the cache starts over: made-up keys cannot make it grow without bound.
MAX_CACHED_LOOKUPS = 10_000


class KeyRing:
    """Look keys up by digest, keeping each answer (found or not) for ttl_s seconds in this process.

    The cache keeps the hot path off the database: a key used a thousand times a second is looked up once
    every ttl_s. The price is that a revoked key still works for up to ttl_s seconds in each gateway process.
    """

    def __init__(self, engine: Engine, ttl_s: float) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._lookups: dict[str, tuple[ApiKeyRecord | None, float]] = {}

    def active_key(self, key: str) -> ApiKeyRecord | None:
        """Return the record of a key that exists and is not revoked, else None."""
        digest = key_digest(key)
        now = time.monotonic()
        with self._lock:
            cached = self._lookups.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self._engine.connect() as conn:
            record = find_api_key(conn=conn, key_sha256=digest)
        active = record if record is not None and record.revoked_at is None else None
        if self._ttl_s > 0:
            with self._lock:
                if len(self._lookups) >= MAX_CACHED_LOOKUPS:
                    self._lookups.clear()
                self._lookups[digest] = (active, now + self._ttl_s)
        return active
