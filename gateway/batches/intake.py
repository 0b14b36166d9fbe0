"""Accept a bulk submission: validate every item, store the valid ones in bulk (COPY on Postgres), publish.

Items are read, checked and stored chunk by chunk, so memory stays bounded whatever the upload size; every
rejected item is stored with the batch, and the receipt lists only the first few. An atomic batch, and any
batch on Postgres, is one transaction: an atomic batch with a bad item stores nothing. On SQLite, which has
one writer, a batch that may be stored in part commits chunk by chunk, so single submissions get in between.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
from celery import Celery
from marshmallow import ValidationError
from sqlalchemy.engine import Connection, Engine

from core.bulk_feeder import feed_bulk_lane
from core.settings import Settings
from core.storage.batches import (
    Rejection,
    add_batch_rejections,
    create_batch,
    finish_batch,
)
from core.storage.bulk_rows import StagedItem, store_batch_chunk
from core.storage.records import utc_now
from gateway.errors import validation_fields
from worker.schemas import RequestSchemas

log = logging.getLogger(__name__)
CONFLICT_MESSAGE = "Already submitted with a different observation."
MAX_BATCH_ID_LENGTH = 128


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


def new_batch_id() -> str:
    """Return a fresh batch id (it also decides which model version accepts the batch)."""
    return uuid.uuid4().hex


def valid_batch_id(value: str) -> bool:
    """Return whether value could be a batch id (so a lookup is worth a query): short, printable text."""
    return 1 <= len(value) <= MAX_BATCH_ID_LENGTH and value.isprintable()


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


def _chunked(items: Iterable[RawItem], size: int) -> Iterator[list[RawItem]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _claimed_id(value: Any) -> str | None:
    claimed = value.get("id") if isinstance(value, dict) else None
    return claimed if isinstance(claimed, str) else None


def _without_nul(value: Any) -> Any:
    """Return value with each NUL of its text shown as U+FFFD: Postgres text and jsonb cannot hold one."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_without_nul(inner) for inner in value]
    return value


def _rejection(item: RawItem, errors: dict[str, Any]) -> Rejection:
    """Return the rejection of an item as stored: its claimed id and errors, with no NUL left in them."""
    return Rejection(item.index, _without_nul(_claimed_id(item.value)), _without_nul(errors))


@dataclass
class ChunkIntake:
    """What one chunk of a batch gave: accepted count and rejections."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def validated_items(
    schemas: RequestSchemas, chunk: list[RawItem]
) -> tuple[list[StagedItem], list[Rejection]]:
    """Validate a chunk: the items to store (observations dumped once, as stored) and the rejected ones."""
    valid: list[StagedItem] = []
    rejected: list[Rejection] = []
    for item in chunk:
        if item.parse_errors is not None:
            rejected.append(_rejection(item, item.parse_errors))
            continue
        try:
            loaded = schemas.load_prediction(item.value)
        except ValidationError as error:
            rejected.append(_rejection(item, validation_fields(error)))
            continue
        observation = loaded["observation"]
        dumped = orjson.dumps(observation, option=orjson.OPT_SORT_KEYS).decode()
        valid.append(StagedItem(item.index, loaded["id"], observation, dumped))
    return valid, rejected


def take_chunk(
    *,
    conn: Connection,
    schemas: RequestSchemas,
    chunk: list[RawItem],
    batch_id: str,
    now: datetime,
    version: str | None = None,
) -> ChunkIntake:
    """Validate a chunk and store it; an id stored before (in this batch or not): replay or conflict.

    version: the model version whose schemas these are, recorded on the new rows as their accepting one.
    """
    valid, rejected = validated_items(schemas, chunk)
    stored = store_batch_chunk(conn=conn, batch_id=batch_id, items=valid, now=now, accepted_version=version)
    rejected += [Rejection(item.position, item.id, {"id": [CONFLICT_MESSAGE]}) for item in stored.conflicts]
    rejected.sort(key=lambda r: r.index)
    return ChunkIntake(accepted=stored.accepted, rejected=rejected)


def submit_batch(
    *,
    engine: Engine,
    celery: Celery,
    schemas: RequestSchemas,
    items: Iterable[RawItem],
    atomic: bool,
    max_items: int,
    chunk_size: int,
    settings: Settings,
    listed: int,
    batch_id: str | None = None,
    version: str | None = None,
    share_key: str | None = None,
) -> BatchReceipt:
    """Validate and store a batch, then feed the bulk lane; TooManyItems, EmptyBatch, AtomicBatchRejected
    store nothing.

    One model version accepts the whole batch: the schemas are its, and version is recorded on its rows.
    share_key: whose turn its slices take on the bulk lane (the API key's name; None, the batch's own).
    """
    receipt = BatchReceipt(batch_id=batch_id or new_batch_id(), listed=listed)
    now = utc_now()
    commit_each_chunk = not atomic and engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        create_batch(conn=conn, batch_id=receipt.batch_id, now=now, share_key=share_key)
        if commit_each_chunk:
            conn.commit()  # SQLite's write lock is not held while the first chunk is read and validated
        for chunk in _chunked(items, chunk_size):
            receipt.items += len(chunk)
            check_item_count(receipt.items, max_items)
            intake = take_chunk(
                conn=conn, schemas=schemas, chunk=chunk, batch_id=receipt.batch_id, now=now, version=version
            )
            receipt.note_rejections(intake.rejected)
            if not atomic:
                add_batch_rejections(conn=conn, batch_id=receipt.batch_id, rejections=intake.rejected)
            receipt.accepted += intake.accepted
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
    # Its first slices go out now if the bulk lane has room; the rest when their turn comes.
    feed_bulk_lane(engine=engine, celery=celery, settings=settings)
    return receipt
