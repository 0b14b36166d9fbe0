"""API keys: store a new key's digest and scopes, find a key by digest, revoke and list keys."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.storage.records import as_utc, as_utc_or_none
from core.storage.tables import api_keys


@dataclass(frozen=True)
class ApiKeyRecord:
    """One stored API key: never the key itself, only its digest and what it may do."""

    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> ApiKeyRecord:
        """Return the record of a row of the api_keys table."""
        return cls(
            name=row.name,
            prefix=row.prefix,
            scopes=frozenset(filter(None, row.scopes.split(","))),
            created_at=as_utc(row.created_at),
            revoked_at=as_utc_or_none(row.revoked_at),
        )


def insert_api_key(
    *, conn: Connection, name: str, prefix: str, key_sha256: str, scopes: Iterable[str], now: datetime
) -> bool:
    """Store a new key; return False when the name is taken (revoked keys keep theirs), nothing written."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(api_keys)
        .values(
            name=name,
            prefix=prefix,
            key_sha256=key_sha256,
            scopes=",".join(sorted(set(scopes))),
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(api_keys.c.name)
    )
    return conn.execute(statement).first() is not None


def find_api_key(*, conn: Connection, key_sha256: str) -> ApiKeyRecord | None:
    """Return the key with this digest, revoked or not, or None."""
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_sha256 == key_sha256)).first()
    return ApiKeyRecord.from_row(row) if row is not None else None


def revoke_api_key(*, conn: Connection, name: str, now: datetime) -> ApiKeyRecord | None:
    """Revoke the named key (a key already revoked keeps its first revocation time); None: no such key."""
    still_active = sa.and_(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
    conn.execute(api_keys.update().where(still_active).values(revoked_at=now))
    row = conn.execute(sa.select(api_keys).where(api_keys.c.name == name)).first()
    return ApiKeyRecord.from_row(row) if row is not None else None


def list_api_keys(*, conn: Connection) -> list[ApiKeyRecord]:
    """Return every key, revoked ones included, oldest first."""
    rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.name))
    return [ApiKeyRecord.from_row(row) for row in rows]
