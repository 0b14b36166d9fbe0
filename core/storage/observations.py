"""Single observations: store, read back, write results and labels, claim stale ones for the redrive."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.clock import database_now, database_time_ago
from core.storage.records import PredictionRecord, PredictionResult, QueuedObservation
from core.storage.tables import DONE, FAILED, QUEUED, batches, insert_predictions, predictions

# On Postgres, one submission's INSERT as text compiled once: building the construct cost more per request
# than running it. The observation goes through the column's own type, so it is stored exactly as before.
_PG_INSERT_QUEUED = sa.text(
    """
    INSERT INTO predictions (id, observation, status, attempts, received_at, published_at, accepted_version)
    VALUES (:id, :observation, 'queued', 0, :received_at, statement_timestamp(), :accepted_version)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
).bindparams(
    sa.bindparam("observation", type_=predictions.c.observation.type),
    sa.bindparam("received_at", type_=predictions.c.received_at.type),
)


def insert_queued(
    *,
    conn: Connection,
    observation_id: str,
    observation: dict[str, Any],
    now: datetime,
    accepted_version: str | None = None,
) -> bool:
    """Store a new observation as queued; return False when the id already exists (nothing written).

    accepted_version: the bundle version whose feature spec accepted it, and which is to predict it.
    """
    if conn.dialect.name == "postgresql":
        params = {
            "id": observation_id,
            "observation": observation,
            "received_at": now,
            "accepted_version": accepted_version,
        }
        return conn.execute(_PG_INSERT_QUEUED, params).first() is not None
    statement = (
        insert_predictions(conn=conn)
        .values(
            id=observation_id,
            observation=observation,
            status=QUEUED,
            attempts=0,
            received_at=now,
            published_at=database_now(conn=conn),
            accepted_version=accepted_version,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(predictions.c.id)
    )
    return conn.execute(statement).first() is not None


def find_prediction(*, conn: Connection, observation_id: str) -> PredictionRecord | None:
    """Return the stored record of one observation, or None."""
    row = conn.execute(sa.select(predictions).where(predictions.c.id == observation_id)).first()
    return PredictionRecord.from_row(row) if row is not None else None


# On Postgres, batches travel as arrays: one statement whatever the row count, compiled once.
_PG_SAVE_PREDICTIONS = sa.text(
    """
    UPDATE predictions AS p
    SET status = 'done', proba = v.proba, prediction = v.prediction, model_version = :model_version,
        predicted_at = :now, attempts = p.attempts + 1
    FROM unnest(CAST(:ids AS text[]), CAST(:probas AS float8[]), CAST(:predictions AS boolean[]))
         AS v(id, proba, prediction)
    WHERE p.id = v.id AND p.status = 'queued'
      AND (p.accepted_version IS NULL OR p.accepted_version = :model_version)
    """
)


def save_predictions(
    *, conn: Connection, results: Sequence[PredictionResult], model_version: str, now: datetime
) -> int:
    """Write a batch of results in one statement; a row already finished keeps its first result.

    Only rows accepted by model_version (or by no recorded version) are written: a row is never predicted
    by a version whose schema did not accept it, whatever version a stale message names.
    """
    if not results:
        return 0
    # Sorted, so two workers writing overlapping rows take the row locks in the same order.
    ordered = sorted(results, key=lambda r: r.id)
    if conn.dialect.name == "postgresql":
        return conn.execute(
            _PG_SAVE_PREDICTIONS,
            {
                "ids": [r.id for r in ordered],
                "probas": [r.proba for r in ordered],
                "predictions": [r.prediction for r in ordered],
                "model_version": model_version,
                "now": now,
            },
        ).rowcount
    statement = (
        predictions.update()
        .where(
            predictions.c.id == sa.bindparam("result_id"),
            predictions.c.status == QUEUED,
            sa.or_(predictions.c.accepted_version.is_(None), predictions.c.accepted_version == model_version),
        )
        .values(
            status=DONE,
            proba=sa.bindparam("result_proba"),
            prediction=sa.bindparam("result_prediction"),
            model_version=model_version,
            predicted_at=now,
            attempts=predictions.c.attempts + 1,
        )
    )
    params = [
        {"result_id": r.id, "result_proba": r.proba, "result_prediction": r.prediction} for r in ordered
    ]
    return conn.execute(statement, params).rowcount


_PG_STILL_QUEUED = sa.text(
    "SELECT id FROM predictions WHERE id = ANY(CAST(:ids AS text[])) AND status = 'queued'"
)
# SQLite binds one parameter per id of an IN list, and allows 32,766 at most (999 before SQLite 3.32).
_SQLITE_IDS_PER_QUERY = 900


def still_queued(*, conn: Connection, observation_ids: Sequence[str]) -> set[str]:
    """Return those of these ids whose rows are still queued (save_predictions left them to their version)."""
    if conn.dialect.name == "postgresql":
        return {row.id for row in conn.execute(_PG_STILL_QUEUED, {"ids": list(observation_ids)})}
    queued: set[str] = set()
    for start in range(0, len(observation_ids), _SQLITE_IDS_PER_QUERY):
        chunk = observation_ids[start : start + _SQLITE_IDS_PER_QUERY]
        rows = conn.execute(
            sa.select(predictions.c.id).where(predictions.c.id.in_(chunk), predictions.c.status == QUEUED)
        )
        queued.update(row.id for row in rows)
    return queued


def record_failed_attempts(
    *,
    conn: Connection,
    observation_ids: Sequence[str],
    reason: str,
    max_attempts: int,
    now: datetime,
) -> list[str]:
    """Count a failed attempt for each queued id; mark failed those that reached max_attempts."""
    if not observation_ids:
        return []
    queued_rows = predictions.c.id.in_(observation_ids) & (predictions.c.status == QUEUED)
    conn.execute(predictions.update().where(queued_rows).values(attempts=predictions.c.attempts + 1))
    exhausted = conn.execute(
        predictions.update()
        .where(queued_rows, predictions.c.attempts >= max_attempts)
        .values(status=FAILED, failure_reason=reason[:2000], predicted_at=now)
        .returning(predictions.c.id)
    )
    return [row.id for row in exhausted]


def mark_failed(*, conn: Connection, observation_ids: Sequence[str], reason: str, now: datetime) -> list[str]:
    """Mark queued ids failed at once (counting the attempt); return those marked."""
    if not observation_ids:
        return []
    marked = conn.execute(
        predictions.update()
        .where(predictions.c.id.in_(observation_ids), predictions.c.status == QUEUED)
        .values(
            status=FAILED,
            failure_reason=reason[:2000],
            predicted_at=now,
            attempts=predictions.c.attempts + 1,
        )
        .returning(predictions.c.id)
    )
    return [row.id for row in marked]


def save_true_class(
    *, conn: Connection, observation_id: str, true_class: bool, now: datetime
) -> PredictionRecord | None:
    """Store the true outcome of an observation; return the updated record, or None if unknown."""
    updated = conn.execute(
        predictions.update()
        .where(predictions.c.id == observation_id)
        .values(true_class=true_class, labelled_at=now)
    )
    if updated.rowcount == 0:
        return None
    return find_prediction(conn=conn, observation_id=observation_id)


def claim_stale_queued(*, conn: Connection, older_than_s: float, limit: int) -> list[QueuedObservation]:
    """Return observations last published over older_than_s ago (with their batch, which names their lane)
    and stamp them published now.

    Times are the database's. A bulk row counts as published when its batch was last fed to the bulk lane,
    and never while the batch still has slices to feed: the feeder hands those out when their turn comes
    (core/bulk_feeder.py), however long an upload or its wait took.
    """
    cutoff = database_time_ago(conn=conn, seconds=older_than_s)
    stale = (
        sa.select(
            predictions.c.id,
            predictions.c.observation,
            predictions.c.accepted_version,
            predictions.c.batch_id,
        )
        .select_from(predictions.outerjoin(batches, batches.c.id == predictions.c.batch_id))
        .where(
            predictions.c.status == QUEUED,
            predictions.c.published_at < cutoff,
            sa.or_(
                batches.c.published_at.is_(None),
                sa.and_(batches.c.next_position.is_(None), batches.c.published_at < cutoff),
            ),
        )
        .order_by(predictions.c.published_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        # Two redrive processes never republish the same rows.
        stale = stale.with_for_update(of=predictions, skip_locked=True)
    claimed = [
        QueuedObservation(
            id=row.id, observation=row.observation, version=row.accepted_version, batch_id=row.batch_id
        )
        for row in conn.execute(stale)
    ]
    if claimed:
        conn.execute(
            predictions.update()
            .where(predictions.c.id.in_([c.id for c in claimed]))
            .values(published_at=database_now(conn=conn))
        )
    return claimed


def queued_accepted_by(*, conn: Connection, version: str, limit: int) -> list[QueuedObservation]:
    """Return up to limit queued observations that version accepted, the longest waiting first."""
    rows = conn.execute(
        sa.select(predictions.c.id, predictions.c.observation)
        .where(predictions.c.status == QUEUED, predictions.c.accepted_version == version)
        .order_by(predictions.c.received_at)
        .limit(limit)
    )
    return [QueuedObservation(id=row.id, observation=row.observation, version=version) for row in rows]


def reassign_queued(
    *, conn: Connection, observation_ids: Sequence[str], from_version: str, to_version: str
) -> int:
    """Make to_version the one that accepts and predicts these rows, those still queued under from_version."""
    if not observation_ids:
        return 0
    moved = conn.execute(
        predictions.update()
        .where(
            predictions.c.id.in_(list(observation_ids)),
            predictions.c.status == QUEUED,
            predictions.c.accepted_version == from_version,
        )
        .values(accepted_version=to_version)
    )
    return int(moved.rowcount)
