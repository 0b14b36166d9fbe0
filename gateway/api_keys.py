"""API keys: their scopes, how a key is made and digested, and the per-process cache of key lookups."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterable

from sqlalchemy.engine import Engine

from core.storage.api_keys import ApiKeyRecord, find_api_key

SUBMIT, READ, LABEL, ADMIN = "submit", "read", "label", "admin"
SCOPES = (SUBMIT, READ, LABEL, ADMIN)
KEY_TAG = "cbk_"  # marks a contraband API key in a config file or a secret scanner's findings
PREFIX_LENGTH = len(KEY_TAG) + 8
# Past this many cached lookups the cache starts over: made-up keys cannot make it grow without bound.
MAX_CACHED_LOOKUPS = 10_000


def new_api_key() -> str:
    """Return a new random key: the tag and 32 random bytes, URL-safe base64 (43 characters)."""
    return KEY_TAG + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """Return the SHA-256 (hex) of a key: what the database holds instead of the key.

    A plain fast hash is the right one here: a key is 256 random bits, not a password a person chose, so there
    is no dictionary to try and no salt or slow hash (bcrypt, scrypt) would make a stolen digest any harder to
    reverse; a slow hash would only cost milliseconds on every lookup. A digest cannot be sent as a key.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str) -> frozenset[str]:
    """Return the scopes named in a comma-separated list; raise ValueError on an unknown or empty one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCOPES]
    if unknown or not names:
        named = f"unknown scope {', '.join(map(repr, unknown))}" if unknown else "no scope given"
        raise ValueError(f"{named}: choose from {', '.join(SCOPES)} (admin allows everything)")
    return frozenset(names)


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Tell whether a key's scopes allow what needs the scope `needed` (admin allows everything)."""
    held = set(scopes)
    return needed in held or ADMIN in held


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
