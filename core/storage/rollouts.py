"""The model rollout: read and write the single row of what serves, and its audit trail of changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.rollout.state import ROLLOUT_ACTIONS, Rollout, RolloutError
from core.storage.records import as_utc
from core.storage.tables import model_rollout, model_rollout_events

ROLLOUT_ROW_ID = 1  # the table holds one row, always this one


@dataclass(frozen=True)
class RolloutEvent:
    """One change of the rollout: when, what was done, by which API key (if any), and the rollout it left."""

    id: int
    at: datetime
    action: str
    rollout: Rollout
    by: str | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> RolloutEvent:
        """Return the event of a row of the model_rollout_events table."""
        return cls(
            id=row.id,
            at=as_utc(row.at),
            action=row.action,
            rollout=_rollout_of(row),
            by=row.by,
        )


def _rollout_of(row: sa.Row[Any]) -> Rollout:
    return Rollout(
        stable_version=row.stable_version,
        canary_version=row.canary_version,
        canary_percent=row.canary_percent,
        shadow_version=row.shadow_version,
    )


def read_rollout(*, conn: Connection, for_update: bool = False) -> Rollout | None:
    """Return what serves, or None before any version was set.

    for_update: hold off every other for_update read and write of the rollout until the transaction ends, so
    that a transition computed from what is read is not lost to a concurrent one.
    """
    query = sa.select(model_rollout).where(model_rollout.c.id == ROLLOUT_ROW_ID)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    elif for_update:
        # SQLite has no row locks, and its driver opens a transaction only before a write: a write that
        # changes nothing takes the database's write lock now, before the read (even with no row yet).
        conn.execute(
            model_rollout.update().where(model_rollout.c.id == ROLLOUT_ROW_ID).values(id=ROLLOUT_ROW_ID)
        )
    row = conn.execute(query).first()
    return _rollout_of(row) if row is not None else None


def write_rollout(*, conn: Connection, rollout: Rollout, action: str, by: str | None, now: datetime) -> None:
    """Make rollout what serves and append the change to the audit trail.

    Both writes run on conn, in the caller's transaction: commit it (engine.begin()) and both are stored, or
    neither. by is the name of the API key that asked for the change.
    """
    if action not in ROLLOUT_ACTIONS:
        raise RolloutError(f"rollout action {action!r} is not one of {', '.join(ROLLOUT_ACTIONS)}")
    state = {
        "stable_version": rollout.stable_version,
        "canary_version": rollout.canary_version,
        "canary_percent": rollout.canary_percent,
        "shadow_version": rollout.shadow_version,
    }
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(model_rollout)
        .values(id=ROLLOUT_ROW_ID, updated_at=now, updated_by=by, **state)
        .on_conflict_do_update(
            index_elements=[model_rollout.c.id], set_={"updated_at": now, "updated_by": by, **state}
        )
    )
    conn.execute(model_rollout_events.insert().values(at=now, action=action, by=by, **state))


def rollout_history(*, conn: Connection, limit: int) -> list[RolloutEvent]:
    """Return up to limit changes of the rollout, the most recent first."""
    rows = conn.execute(
        sa.select(model_rollout_events).order_by(model_rollout_events.c.id.desc()).limit(limit)
    )
    return [RolloutEvent.from_row(row) for row in rows]
