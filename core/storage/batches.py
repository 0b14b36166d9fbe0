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

    @property
    def done(self) -> bool:
        """Return whether every accepted item is finished (predicted or failed)."""
        return self.counts[QUEUED] == 0


def create_batch(*, conn: Connection, batch_id: str, now: datetime) -> None:
    """Open a bulk submission; its counts are filled in by finish_batch."""
    conn.execute(batches.insert().values(id=batch_id, created_at=now, items=0, accepted=0, rejected=0))


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
    """Store the final counts of a bulk submission's intake; its publishing starts now."""
    conn.execute(
        batches.update()
        .where(batches.c.id == batch_id)
        .values(items=items, accepted=accepted, rejected=rejected, published_at=database_now(conn=conn))
    )


def mark_batch_published(*, conn: Connection, batch_id: str) -> None:
    """Stamp a batch as published now: the redrive leaves its rows alone for REDRIVE_AFTER_S from here."""
    conn.execute(
        batches.update().where(batches.c.id == batch_id).values(published_at=database_now(conn=conn))
    )


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
