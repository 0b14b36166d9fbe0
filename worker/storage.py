"""All SQL of the service: the predictions table and the keyword-only functions that read and write it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

QUEUED, DONE, FAILED = "queued", "done", "failed"
STATUSES = (QUEUED, DONE, FAILED)

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("observation", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("proba", sa.Float),
    sa.Column("prediction", sa.Boolean),
    sa.Column("model_version", sa.String(64)),
    sa.Column("failure_reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("true_class", sa.Boolean),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("predicted_at", sa.DateTime(timezone=True)),
    sa.Column("labelled_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(f"status IN {STATUSES!r}", name="predictions_status_known"),
    sa.Index("predictions_queued_by_publish_time", "status", "published_at"),
)


@dataclass(frozen=True)
class PredictionRecord:
    """One stored observation and what became of it."""

    id: str
    observation: dict[str, Any]
    status: str
    proba: float | None
    prediction: bool | None
    model_version: str | None
    failure_reason: str | None
    attempts: int
    true_class: bool | None
    received_at: datetime
    predicted_at: datetime | None
    labelled_at: datetime | None


@dataclass(frozen=True)
class PredictionResult:
    """What a worker computed for one observation."""

    id: str
    proba: float
    prediction: bool


@dataclass(frozen=True)
class QueuedObservation:
    """An observation still waiting for a prediction, as carried in a task message."""

    id: str
    observation: dict[str, Any]


def utc_now() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _record(row: sa.Row[Any]) -> PredictionRecord:
    return PredictionRecord(
        id=row.id,
        observation=row.observation,
        status=row.status,
        proba=row.proba,
        prediction=row.prediction,
        model_version=row.model_version,
        failure_reason=row.failure_reason,
        attempts=row.attempts,
        true_class=row.true_class,
        received_at=_aware(row.received_at) or row.received_at,
        predicted_at=_aware(row.predicted_at),
        labelled_at=_aware(row.labelled_at),
    )


def make_engine(url: str) -> Engine:
    """Return an engine for Postgres or SQLite that survives server restarts and concurrent writers."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(predictions)
    return sqlite.insert(predictions)


def insert_queued(
    conn: Connection, *, observation_id: str, observation: dict[str, Any], now: datetime
) -> bool:
    """Store a new observation as queued; return False when the id already exists (nothing written)."""
    statement = (
        _insert(conn)
        .values(
            id=observation_id,
            observation=observation,
            status=QUEUED,
            attempts=0,
            received_at=now,
            published_at=now,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(predictions.c.id)
    )
    return conn.execute(statement).first() is not None


def find_prediction(conn: Connection, *, observation_id: str) -> PredictionRecord | None:
    """Return the stored record of one observation, or None."""
    row = conn.execute(sa.select(predictions).where(predictions.c.id == observation_id)).first()
    return _record(row) if row is not None else None


def save_predictions(
    conn: Connection, *, results: Sequence[PredictionResult], model_version: str, now: datetime
) -> int:
    """Write a batch of results in one statement; a row already finished keeps its first result."""
    if not results:
        return 0
    statement = (
        predictions.update()
        .where(predictions.c.id == sa.bindparam("result_id"), predictions.c.status == QUEUED)
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
        {"result_id": r.id, "result_proba": r.proba, "result_prediction": r.prediction} for r in results
    ]
    return conn.execute(statement, params).rowcount


def record_failed_attempts(
    conn: Connection,
    *,
    observation_ids: Sequence[str],
    reason: str,
    max_attempts: int,
    now: datetime,
) -> list[str]:
    """Count a failed attempt for each queued id; mark failed those that reached max_attempts."""
    if not observation_ids:
        return []
    still_queued = predictions.c.id.in_(observation_ids) & (predictions.c.status == QUEUED)
    conn.execute(predictions.update().where(still_queued).values(attempts=predictions.c.attempts + 1))
    exhausted = conn.execute(
        predictions.update()
        .where(still_queued, predictions.c.attempts >= max_attempts)
        .values(status=FAILED, failure_reason=reason[:2000], predicted_at=now)
        .returning(predictions.c.id)
    )
    return [row.id for row in exhausted]


def save_true_class(
    conn: Connection, *, observation_id: str, true_class: bool, now: datetime
) -> PredictionRecord | None:
    """Store the true outcome of an observation; return the updated record, or None if unknown."""
    updated = conn.execute(
        predictions.update()
        .where(predictions.c.id == observation_id)
        .values(true_class=true_class, labelled_at=now)
    )
    if updated.rowcount == 0:
        return None
    return find_prediction(conn, observation_id=observation_id)


def claim_stale_queued(
    conn: Connection, *, published_before: datetime, now: datetime, limit: int
) -> list[QueuedObservation]:
    """Return observations queued since before published_before and mark them published now."""
    stale = (
        sa.select(predictions.c.id, predictions.c.observation)
        .where(predictions.c.status == QUEUED, predictions.c.published_at < published_before)
        .order_by(predictions.c.published_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        # Two redrive processes never republish the same rows.
        stale = stale.with_for_update(skip_locked=True)
    claimed = [QueuedObservation(id=row.id, observation=row.observation) for row in conn.execute(stale)]
    if claimed:
        conn.execute(
            predictions.update().where(predictions.c.id.in_([c.id for c in claimed])).values(published_at=now)
        )
    return claimed


def count_by_status(conn: Connection) -> dict[str, int]:
    """Return how many observations are in each status."""
    rows = conn.execute(sa.select(predictions.c.status, sa.func.count()).group_by(predictions.c.status)).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(total) for status, total in rows})
    return counts


def count_rows(conn: Connection, *, observation_ids: Iterable[str] | None = None) -> int:
    """Return the number of stored observations (all, or among the given ids)."""
    query = sa.select(sa.func.count()).select_from(predictions)
    if observation_ids is not None:
        query = query.where(predictions.c.id.in_(list(observation_ids)))
    return int(conn.execute(query).scalar_one())


def ping(conn: Connection) -> None:
    """Run a trivial query; raise if the database cannot answer."""
    conn.execute(sa.text("SELECT 1"))
