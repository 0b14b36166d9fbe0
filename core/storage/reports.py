"""What operators and the bench read: the backlog and drain timings (the model's figures: monitoring.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.engine import pg_copy
from core.storage.records import as_utc, as_utc_or_none
from core.storage.tables import FAILED, QUEUED, predictions


@dataclass(frozen=True)
class Backlog:
    """What waits and what failed: the figures operators alert on."""

    queued: int
    failed: int
    oldest_queued_at: datetime | None


def backlog(*, conn: Connection) -> Backlog:
    """Return the queued and failed counts and when the oldest queued observation arrived.

    It reads every queued and failed row (found through the status index): cheap while the backlog is what a
    healthy service has; an alert fires long before it is not.
    """
    rows = conn.execute(
        sa.select(predictions.c.status, sa.func.count(), sa.func.min(predictions.c.received_at))
        .where(predictions.c.status.in_((QUEUED, FAILED)))
        .group_by(predictions.c.status)
    ).all()
    found = {status: (int(count), oldest) for status, count, oldest in rows}
    queued, oldest = found.get(QUEUED, (0, None))
    failed, _ = found.get(FAILED, (0, None))
    return Backlog(queued=queued, failed=failed, oldest_queued_at=as_utc_or_none(oldest))


def last_prediction_if_drained(*, conn: Connection) -> datetime | None:
    """Return the newest predicted_at once nothing is queued any more, else None."""
    queued = conn.execute(sa.select(sa.func.count()).where(predictions.c.status == QUEUED)).scalar_one()
    last = conn.execute(sa.select(sa.func.max(predictions.c.predicted_at))).scalar_one()
    return as_utc(last) if queued == 0 and last is not None else None


def submit_to_result_seconds(*, conn: Connection, observation_ids: Sequence[str]) -> list[float]:
    """Return predicted_at - received_at, in seconds, of each given observation already predicted."""
    rows = conn.execute(
        sa.select(predictions.c.received_at, predictions.c.predicted_at).where(
            predictions.c.id.in_(observation_ids), predictions.c.predicted_at.is_not(None)
        )
    ).all()
    return [(as_utc(done) - as_utc(received)).total_seconds() for received, done in rows]


@dataclass(frozen=True)
class PredictionSpan:
    """When the first and the last of a set of observations were predicted, and how many were."""

    first: datetime
    last: datetime
    count: int


def prediction_span(*, conn: Connection, id_prefix: str) -> PredictionSpan:
    """Return the prediction span of the observations whose id starts with id_prefix."""
    first, last, count = conn.execute(
        sa.select(
            sa.func.min(predictions.c.predicted_at),
            sa.func.max(predictions.c.predicted_at),
            sa.func.count(),
        ).where(predictions.c.id.startswith(id_prefix))
    ).one()
    return PredictionSpan(first=as_utc(first), last=as_utc(last), count=int(count))


def copy_into_scratch_table(*, conn: Connection, rows: Iterable[tuple[str, dict[str, Any], float]]) -> None:
    """COPY (id, observation, proba) rows into a session-temporary table: the write no intake can beat."""
    conn.execute(sa.text("CREATE TEMP TABLE raw_copy (id text, observation jsonb, proba float8)"))
    pg_copy(
        conn=conn,
        target="raw_copy (id, observation, proba)",
        rows=((i, json.dumps(observation), proba) for i, observation, proba in rows),
    )
