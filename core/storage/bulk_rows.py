"""Store a bulk submission's rows many at a time: COPY and one statement per chunk on Postgres, multi-row
INSERTs on SQLite; an id stored before is a replay when its observation is the same, a conflict otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.clock import database_now
from core.storage.engine import pg_copy
from core.storage.records import QueuedObservation
from core.storage.tables import QUEUED, batch_items, insert_predictions, predictions

# Rows per multi-row statement: well under SQLite's and Postgres's bound-parameter limits.
ROWS_PER_STATEMENT = 500

# Bulk intake on Postgres: rows are copied into a session-local staging table (COPY is several times
# faster than any INSERT), then moved into predictions by one statement that skips ids already stored.
_PG_CREATE_STAGING = sa.text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS staged_observations (
        id text, observation text, accepted_version text
    ) ON COMMIT DELETE ROWS
    """
)
_PG_INSERT_STAGED = sa.text(
    """
    WITH staged AS (DELETE FROM staged_observations RETURNING id, observation, accepted_version)
    INSERT INTO predictions
        (id, observation, status, attempts, received_at, published_at, batch_id, accepted_version)
    SELECT staged.id, CAST(staged.observation AS jsonb), 'queued', 0, :now, statement_timestamp(), :batch_id,
        staged.accepted_version
    FROM staged
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)


# Bulk intake on Postgres, chunk by chunk: the validated items (each id once) are copied into a
# session-local staging table (COPY is several times faster than any INSERT), then one statement moves the new
# ids into predictions and records as the batch's items those rows and the items whose id was stored before
# with the same observation (replays). Anything else is a conflict. Only positions come back to Python.
_PG_CREATE_STAGED_ITEMS = sa.text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS staged_batch_items (position integer, id text, observation text)
    ON COMMIT DELETE ROWS
    """
)
_PG_STORE_STAGED_ITEMS = sa.text(
    """
    WITH inserted AS (
        INSERT INTO predictions
            (id, observation, status, attempts, received_at, published_at, batch_id, accepted_version)
        SELECT id, CAST(observation AS jsonb), 'queued', 0, :now, statement_timestamp(), :batch_id,
            :accepted_version
        FROM staged_batch_items
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ), accepted AS (
        SELECT s.position, s.id, true AS created FROM staged_batch_items AS s JOIN inserted USING (id)
        UNION ALL
        -- The statement's snapshot: only rows stored before it.
        SELECT s.position, s.id, false FROM staged_batch_items AS s JOIN predictions AS p ON p.id = s.id
        WHERE p.observation = CAST(s.observation AS jsonb)
    ), recorded AS (
        INSERT INTO batch_items (batch_id, position, observation_id)
        SELECT :batch_id, position, id FROM accepted
    )
    SELECT position, created FROM accepted
    """
)
# A temporary table emptied by TRUNCATE leaves no dead rows for the next chunk's scans to step over.
_PG_CLEAR_STAGED_ITEMS = sa.text("TRUNCATE staged_batch_items")


@dataclass(frozen=True)
class StagedItem:
    """A validated item of a batch: position in the upload, id, observation, and its JSON (keys sorted)."""

    position: int
    id: str
    observation: dict[str, Any]
    json: str


@dataclass(frozen=True)
class StoredChunk:
    """What storing a chunk of a batch did: how many items it accepted, and the items whose id is stored with
    another observation (conflicts: not recorded as the batch's items)."""

    accepted: int
    conflicts: list[StagedItem]


def _stored_positions(
    conn: Connection, batch_id: str, items: Sequence[StagedItem], now: datetime, accepted_version: str | None
) -> set[int]:
    """Store the new ones of distinct-id items, record the accepted; return the accepted positions."""
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_CREATE_STAGED_ITEMS)
        pg_copy(
            conn=conn,
            target="staged_batch_items (position, id, observation)",
            rows=((item.position, item.id, item.json) for item in items),
        )
        params = {"now": now, "batch_id": batch_id, "accepted_version": accepted_version}
        rows = conn.execute(_PG_STORE_STAGED_ITEMS, params).all()
        conn.execute(_PG_CLEAR_STAGED_ITEMS)
        return {row.position for row in rows}
    insert_queued_many(
        conn=conn,
        observations=[
            QueuedObservation(id=item.id, observation=item.observation, version=accepted_version)
            for item in items
        ],
        batch_id=batch_id,
        now=now,
    )
    stored = find_observations(conn=conn, observation_ids=[item.id for item in items])
    accepted = [item for item in items if stored.get(item.id) == item.observation]
    add_batch_items(conn=conn, batch_id=batch_id, positions=[(item.position, item.id) for item in accepted])
    return {item.position for item in accepted}


def store_batch_chunk(
    *,
    conn: Connection,
    batch_id: str,
    items: Sequence[StagedItem],
    now: datetime,
    accepted_version: str | None = None,
) -> StoredChunk:
    """Store a chunk's new observations as queued and record its accepted items (items in position order).

    accepted_version: the bundle version whose feature spec accepted the batch, recorded on its new rows.

    An id already stored (by an earlier batch, a single submission, or earlier in this batch) is accepted when
    its observation is the stored one: a replay. An id repeated within the chunk shares its first item's fate
    when its observation is the same (compared as dumped, with sorted keys), and is a conflict otherwise.
    """
    first: dict[str, StagedItem] = {}
    repeats: list[StagedItem] = []
    for item in items:
        if first.setdefault(item.id, item) is not item:
            repeats.append(item)
    accepted = _stored_positions(conn, batch_id, list(first.values()), now, accepted_version)
    replays = [r for r in repeats if first[r.id].position in accepted and r.json == first[r.id].json]
    add_batch_items(conn=conn, batch_id=batch_id, positions=[(r.position, r.id) for r in replays])
    accepted.update(r.position for r in replays)
    return StoredChunk(
        accepted=len(accepted),
        conflicts=[item for item in items if item.position not in accepted],
    )


def statement_chunks(rows: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    """Yield rows in runs of size (bound parameters per statement stay under both databases' limits)."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def insert_queued_many(
    *,
    conn: Connection,
    observations: Sequence[QueuedObservation],
    batch_id: str | None,
    now: datetime,
) -> set[str]:
    """Store many observations as queued (COPY on Postgres, multi-row INSERTs); return the ids created.

    Each row records its observation's version as the one that accepted it.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_CREATE_STAGING)
        pg_copy(
            conn=conn,
            target="staged_observations (id, observation, accepted_version)",
            rows=((o.id, json.dumps(o.observation), o.version) for o in observations),
        )
        return set(conn.execute(_PG_INSERT_STAGED, {"now": now, "batch_id": batch_id}).scalars())
    created: set[str] = set()
    published_at = database_now(conn=conn)
    for chunk in statement_chunks(observations):
        rows = [
            {
                "id": o.id,
                "observation": o.observation,
                "status": QUEUED,
                "attempts": 0,
                "received_at": now,
                "published_at": published_at,
                "batch_id": batch_id,
                "accepted_version": o.version,
            }
            for o in chunk
        ]
        statement = (
            insert_predictions(conn=conn)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(predictions.c.id)
        )
        created.update(conn.execute(statement).scalars())
    return created


def find_observations(*, conn: Connection, observation_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Return the stored observation of each id that exists."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in statement_chunks(observation_ids):
        rows = conn.execute(
            sa.select(predictions.c.id, predictions.c.observation).where(predictions.c.id.in_(chunk))
        )
        found.update({row.id: row.observation for row in rows})
    return found


def add_batch_items(*, conn: Connection, batch_id: str, positions: Sequence[tuple[int, str]]) -> None:
    """Record accepted items (position in the submission, observation id): COPY, or multi-row INSERTs."""
    if not positions:
        return  # most chunks repeat no id: no COPY round trip for nothing
    if conn.dialect.name == "postgresql":
        pg_copy(
            conn=conn,
            target="batch_items (batch_id, position, observation_id)",
            rows=((batch_id, p, i) for p, i in positions),
        )
        return
    for chunk in statement_chunks(positions):
        conn.execute(
            batch_items.insert().values(
                [{"batch_id": batch_id, "position": p, "observation_id": i} for p, i in chunk]
            )
        )
