"""Bulk submissions: open and finish a batch, its rejections, the slices messages name, progress, results."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.bulk_rows import statement_chunks
from core.storage.clock import database_now
from core.storage.records import BatchSlice, PredictionRecord, QueuedObservation, as_utc
from core.storage.tables import (
    QUEUED,
    STATUSES,
    batch_items,
    batch_rejections,
    batches,
    predictions,
)


@dataclass(frozen=True)
class BatchProgress:
    """Counts and times of one bulk submission."""

    id: str
    created_at: datetime
    items: int
    accepted: int
    rejected: int
    counts: dict[str, int]
    finished_at: datetime | None
    priority: int = 0

    @property
    def done(self) -> bool:
        """Return whether every accepted item is finished (predicted or failed)."""
        return self.counts[QUEUED] == 0


def create_batch(
    *, conn: Connection, batch_id: str, now: datetime, share_key: str | None = None, priority: int = 0
) -> None:
    """Open a bulk submission; its counts are filled in by finish_batch.

    share_key: whose turn its slices take on the bulk lane (an API key's id; None, the batch's own turn).
    """
    conn.execute(
        batches.insert().values(
            id=batch_id,
            created_at=now,
            items=0,
            accepted=0,
            rejected=0,
            share_key=share_key,
            priority=priority,
        )
    )


@dataclass(frozen=True)
class Rejection:
    """An item of a batch that was not accepted, as stored: its position, claimed id and errors by field."""

    index: int
    id: str | None
    errors: dict[str, Any]


def add_batch_rejections(*, conn: Connection, batch_id: str, rejections: Sequence[Rejection]) -> None:
    """Record rejected items of a batch (all of them; the answer to the upload lists only the first few)."""
    for chunk in statement_chunks(rejections):
        conn.execute(
            batch_rejections.insert().values(
                [
                    {"batch_id": batch_id, "position": r.index, "observation_id": r.id, "errors": r.errors}
                    for r in chunk
                ]
            )
        )


def iter_batch_rejections(*, conn: Connection, batch_id: str, chunk_size: int = 1000) -> Iterable[Rejection]:
    """Yield every rejected item of a batch in submission order, streamed."""
    query = (
        sa.select(batch_rejections)
        .where(batch_rejections.c.batch_id == batch_id)
        .order_by(batch_rejections.c.position)
        .execution_options(yield_per=chunk_size)
    )
    for row in conn.execute(query):
        yield Rejection(index=row.position, id=row.observation_id, errors=row.errors)


def finish_batch(*, conn: Connection, batch_id: str, items: int, accepted: int, rejected: int) -> None:
    """Store the final counts of a bulk submission's intake; its feeding to the bulk lane starts now."""
    conn.execute(
        batches.update()
        .where(batches.c.id == batch_id)
        .values(
            items=items,
            accepted=accepted,
            rejected=rejected,
            published_at=database_now(conn=conn),
            next_position=0 if accepted else None,
        )
    )


@dataclass(frozen=True)
class FeedingBatch:
    """A batch with items not yet fed to the bulk lane: its share, priority, next position and last feed."""

    id: str
    share: str
    priority: int
    next_position: int
    items: int
    created_at: datetime
    fed_at: datetime | None


def feeding_batches(*, conn: Connection) -> list[FeedingBatch]:
    """Return every batch with slices left to feed, the highest priority first, then the oldest."""
    query = (
        sa.select(
            batches.c.id,
            batches.c.share_key,
            batches.c.priority,
            batches.c.next_position,
            batches.c["items"],
            batches.c.created_at,
            batches.c.published_at,
        )
        .where(batches.c.next_position.is_not(None))
        .order_by(batches.c.priority.desc(), batches.c.created_at, batches.c.id)
    )
    return [
        FeedingBatch(
            id=row.id,
            share=row.share_key or row.id,
            priority=row.priority,
            next_position=row.next_position,
            items=row.items,
            created_at=as_utc(row.created_at),
            fed_at=as_utc(row.published_at) if row.published_at is not None else None,
        )
        for row in conn.execute(query)
    ]


def claim_slice(*, conn: Connection, batch_id: str, first: int, following: int | None) -> bool:
    """Move a batch's next position from first to following (None: every slice fed) and stamp it fed now;
    return False when another feeder moved it first."""
    moved = conn.execute(
        batches.update()
        .where(batches.c.id == batch_id, batches.c.next_position == first)
        .values(next_position=following, published_at=database_now(conn=conn))
    )
    return moved.rowcount == 1


def mark_batch_fed(*, conn: Connection, batch_id: str) -> None:
    """Record that every slice of a batch was fed to the bulk lane now, as the last claim_slice does."""
    conn.execute(
        batches.update()
        .where(batches.c.id == batch_id)
        .values(next_position=None, published_at=database_now(conn=conn))
    )


def set_batch_priority(*, conn: Connection, batch_id: str, priority: int) -> bool:
    """Set a batch's priority on the bulk lane; return False when no such batch exists."""
    changed = conn.execute(batches.update().where(batches.c.id == batch_id).values(priority=priority))
    return changed.rowcount == 1


def read_batch_slices(*, conn: Connection, slices: Sequence[BatchSlice]) -> list[QueuedObservation]:
    """Return the still-queued observations that these slices of batches refer to, in submission order."""
    if not slices:
        return []
    query = (
        sa.select(predictions.c.id, predictions.c.observation, predictions.c.accepted_version)
        .select_from(batch_items.join(predictions, predictions.c.id == batch_items.c.observation_id))
        .where(
            predictions.c.status == QUEUED,
            sa.or_(
                *(
                    sa.and_(
                        batch_items.c.batch_id == s.batch_id,
                        batch_items.c.position.between(s.first, s.last),
                    )
                    for s in slices
                )
            ),
        )
        .order_by(batch_items.c.batch_id, batch_items.c.position)
    )
    return [
        QueuedObservation(id=row.id, observation=row.observation, version=row.accepted_version)
        for row in conn.execute(query)
    ]


def batch_progress(*, conn: Connection, batch_id: str) -> BatchProgress | None:
    """Return the counts by status and the times of a bulk submission, or None if unknown."""
    batch = conn.execute(sa.select(batches).where(batches.c.id == batch_id)).first()
    if batch is None:
        return None
    rows = conn.execute(
        sa.select(predictions.c.status, sa.func.count(), sa.func.max(predictions.c.predicted_at))
        .select_from(batch_items.join(predictions, predictions.c.id == batch_items.c.observation_id))
        .where(batch_items.c.batch_id == batch_id)
        .group_by(predictions.c.status)
    ).all()
    counts = dict.fromkeys(STATUSES, 0)
    latest: list[datetime] = []
    for status, total, last in rows:
        counts[status] = int(total)
        if last is not None:
            latest.append(as_utc(last))
    created_at = as_utc(batch.created_at)
    finished = None
    if counts[QUEUED] == 0:
        finished = max(latest) if latest else created_at  # a batch with nothing accepted ends as it starts
    return BatchProgress(
        id=batch.id,
        created_at=created_at,
        items=batch.items,
        accepted=batch.accepted,
        rejected=batch.rejected,
        counts=counts,
        finished_at=finished,
        priority=batch.priority,
    )


def iter_batch_results(
    *, conn: Connection, batch_id: str, chunk_size: int = 1000
) -> Iterable[tuple[int, PredictionRecord]]:
    """Yield (position, record) for every accepted item of a batch, in submission order, streamed."""
    query = (
        sa.select(batch_items.c.position, predictions)
        .select_from(batch_items.join(predictions, predictions.c.id == batch_items.c.observation_id))
        .where(batch_items.c.batch_id == batch_id)
        .order_by(batch_items.c.position)
        .execution_options(yield_per=chunk_size)
    )
    for row in conn.execute(query):
        yield row.position, PredictionRecord.from_row(row)
