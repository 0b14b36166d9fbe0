"""What only the bench reads and writes: drain timings, submit-to-result times, the baseline's rows, raw COPY.

No production code calls this module: the service's own reads are in the other storage modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.engine import pg_copy
from core.storage.records import PredictionResult, as_utc
from core.storage.tables import DONE, QUEUED, predictions


def last_prediction_if_drained(*, conn: Connection) -> datetime | None:
    """Return the newest predicted_at once nothing is queued any more, else None.

    Asked many times a second while a run drains, so it costs the database next to nothing until then: one
    look at the status index for a queued row. The newest predicted_at (a scan of the whole table: it has no
    index) is read once, when none is left; counting the queued rows instead took Postgres a core while a
    million waited, which the run being measured did not get.
    """
    waiting = conn.execute(sa.select(sa.exists().where(predictions.c.status == QUEUED))).scalar_one()
    if waiting:
        return None
    last = conn.execute(sa.select(sa.func.max(predictions.c.predicted_at))).scalar_one()
    return as_utc(last) if last is not None else None


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


def insert_predicted(
    *,
    conn: Connection,
    observation_id: str,
    observation: dict[str, Any],
    result: PredictionResult,
    model_version: str,
    now: datetime,
) -> None:
    """Store an observation predicted inline, as the course's synchronous server did (the bench baseline)."""
    conn.execute(
        predictions.insert().values(
            id=observation_id,
            observation=observation,
            status=DONE,
            proba=result.proba,
            prediction=result.prediction,
            model_version=model_version,
            attempts=1,
            received_at=now,
            published_at=now,
            predicted_at=now,
        )
    )
