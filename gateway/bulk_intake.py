"""Accept a bulk submission: validate every item, store the valid ones in bulk (COPY on Postgres), publish.

Items are read, checked and stored chunk by chunk, so memory stays bounded whatever the upload size; every
rejected item is stored with the batch, and the receipt lists only the first few. An atomic batch, and any
batch on Postgres, is one transaction: an atomic batch with a bad item stores nothing. On SQLite, which has
one writer, a batch that may be stored in part commits chunk by chunk, so single submissions get in between.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from celery import Celery
from marshmallow import ValidationError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from core.publishing import PUBLISH_ERRORS, publish_observations
from core.storage.batches import (
    Rejection,
    add_batch_items,
    add_batch_rejections,
    create_batch,
    find_observations,
    finish_batch,
    insert_queued_many,
    iter_batch_queued,
    mark_batch_published,
)
from core.storage.records import QueuedObservation, utc_now
from gateway.errors import validation_fields
from worker.schemas import RequestSchemas

log = logging.getLogger(__name__)
CONFLICT_MESSAGE = "Already submitted with a different observation."


@dataclass(frozen=True)
class RawItem:
    """One item of an upload as parsed from its format, or the reason it could not be parsed."""

    index: int
    value: Any = None
    parse_errors: dict[str, Any] | None = None


@dataclass
class BatchReceipt:
    """What the intake of one batch did: counts, and the first rejected items (all are stored)."""

    batch_id: str
    listed: int
    items: int = 0
    accepted: int = 0
    rejected_count: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def note_rejections(self, rejections: list[Rejection]) -> None:
        """Count rejections (in submission order), keeping the first `listed` of them to show."""
        self.rejected_count += len(rejections)
        self.rejected += rejections[: max(self.listed - len(self.rejected), 0)]


class TooManyItems(Exception):
    """The upload holds more items than the configured limit; nothing was stored."""


class EmptyBatch(Exception):
    """The upload holds no item; nothing was stored."""


def check_item_count(count: int, max_items: int) -> None:
    """Raise TooManyItems or EmptyBatch when a batch of count items cannot be taken."""
    if count > max_items:
        raise TooManyItems(f"A batch holds at most {max_items} items.")
    if count == 0:
        raise EmptyBatch("The batch holds no items.")


class AtomicBatchRejected(Exception):
    """An all-or-nothing batch had bad items; nothing was stored."""

    def __init__(self, rejected: list[Rejection], count: int) -> None:
        super().__init__(f"{count} items rejected")
        self.rejected = rejected
        self.count = count


def _fingerprint(observation: dict[str, Any]) -> bytes:
    return hashlib.blake2b(json.dumps(observation, sort_keys=True).encode(), digest_size=16).digest()


def _chunked(items: Iterable[RawItem], size: int) -> Iterator[list[RawItem]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _claimed_id(value: Any) -> str | None:
    claimed = value.get("id") if isinstance(value, dict) else None
    return claimed if isinstance(claimed, str) else None


@dataclass
class ChunkIntake:
    """What one chunk of a batch gave: accepted (position, id) pairs and rejected items."""

    positions: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def take_chunk(
    *,
    conn: Connection,
    schemas: RequestSchemas,
    chunk: list[RawItem],
    seen: dict[str, bytes],
    batch_id: str,
    now: datetime,
) -> ChunkIntake:
    """Validate a chunk and store its new observations; an id seen before in the batch: replay or conflict."""
    intake = ChunkIntake()
    fresh: list[tuple[int, QueuedObservation]] = []
    for item in chunk:
        if item.parse_errors is not None:
            intake.rejected.append(Rejection(item.index, _claimed_id(item.value), item.parse_errors))
            continue
        try:
            loaded = schemas.load_prediction(item.value)
        except ValidationError as error:
            intake.rejected.append(Rejection(item.index, _claimed_id(item.value), validation_fields(error)))
            continue
        observation = QueuedObservation(id=loaded["id"], observation=loaded["observation"])
        fingerprint = _fingerprint(observation.observation)
        if observation.id not in seen:
            seen[observation.id] = fingerprint
            fresh.append((item.index, observation))
        elif seen[observation.id] == fingerprint:
            intake.positions.append((item.index, observation.id))
        else:
            intake.rejected.append(Rejection(item.index, observation.id, {"id": [CONFLICT_MESSAGE]}))
    created = insert_queued_many(conn=conn, observations=[o for _, o in fresh], batch_id=batch_id, now=now)
    existing = find_observations(conn=conn, observation_ids=[o.id for _, o in fresh if o.id not in created])
    for index, observation in fresh:
        if observation.id in created or existing.get(observation.id) == observation.observation:
            intake.positions.append((index, observation.id))
        else:
            intake.rejected.append(Rejection(index, observation.id, {"id": [CONFLICT_MESSAGE]}))
    intake.rejected.sort(key=lambda r: r.index)
    return intake


def submit_batch(
    *,
    engine: Engine,
    celery: Celery,
    schemas: RequestSchemas,
    items: Iterable[RawItem],
    atomic: bool,
    max_items: int,
    chunk_size: int,
    per_message: int,
    listed: int,
) -> BatchReceipt:
    """Validate, store and publish a batch; TooManyItems, EmptyBatch, AtomicBatchRejected store nothing."""
    receipt = BatchReceipt(batch_id=uuid.uuid4().hex, listed=listed)
    seen: dict[str, bytes] = {}
    now = utc_now()
    commit_each_chunk = not atomic and engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        create_batch(conn=conn, batch_id=receipt.batch_id, now=now)
        if commit_each_chunk:
            conn.commit()  # SQLite's write lock is not held while the first chunk is read and validated
        for chunk in _chunked(items, chunk_size):
            receipt.items += len(chunk)
            check_item_count(receipt.items, max_items)
            intake = take_chunk(
                conn=conn, schemas=schemas, chunk=chunk, seen=seen, batch_id=receipt.batch_id, now=now
            )
            receipt.note_rejections(intake.rejected)
            if not atomic:
                add_batch_rejections(conn=conn, batch_id=receipt.batch_id, rejections=intake.rejected)
            add_batch_items(conn=conn, batch_id=receipt.batch_id, positions=intake.positions)
            receipt.accepted += len(intake.positions)
            if commit_each_chunk:
                conn.commit()
        check_item_count(receipt.items, max_items)
        if atomic and receipt.rejected_count:
            raise AtomicBatchRejected(receipt.rejected, receipt.rejected_count)
        finish_batch(
            conn=conn,
            batch_id=receipt.batch_id,
            items=receipt.items,
            accepted=receipt.accepted,
            rejected=receipt.rejected_count,
        )
        conn.commit()
    publish_batch(engine=engine, celery=celery, batch_id=receipt.batch_id, per_message=per_message)
    return receipt


def publish_batch(*, engine: Engine, celery: Celery, batch_id: str, per_message: int) -> bool:
    """Publish the committed, still-queued rows of a batch, per_message observations per message."""
    try:
        with engine.connect() as conn:
            for chunk in iter_batch_queued(conn=conn, batch_id=batch_id, chunk_size=per_message * 20):
                publish_observations(celery, chunk, per_message=per_message)
    except PUBLISH_ERRORS:
        log.warning("batch publish failed; left for the redrive", extra={"batch_id": batch_id})
        return False
    try:
        with engine.begin() as conn:
            mark_batch_published(conn=conn, batch_id=batch_id)
    except OperationalError:  # published all the same; the redrive may only publish some rows again
        log.warning("batch publish time not stored", extra={"batch_id": batch_id})
    return True
