"""API keys: their scopes, and how a key is made and digested (what gateway and operator commands share)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

SUBMIT, READ, LABEL, ADMIN = "submit", "read", "label", "admin"
SCOPES = (SUBMIT, READ, LABEL, ADMIN)
KEY_TAG = "cbk_"  # marks a contraband API key in a config file or a secret scanner's findings
PREFIX_LENGTH = len(KEY_TAG) + 8


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
