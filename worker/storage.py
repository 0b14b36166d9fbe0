"""All SQL of the service: the predictions table and the keyword-only functions that read and write it."""

from __future__ import annotations

import json
import time
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
    # The bulk submission that created the row, if any.
    sa.Column("batch_id", sa.String(64)),
    sa.CheckConstraint(f"status IN {STATUSES!r}", name="predictions_status_known"),
    sa.Index("predictions_queued_by_publish_time", "status", "published_at"),
    sa.Index("predictions_by_batch", "batch_id", "status"),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("accepted", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
)

# One row per accepted item of a batch, in submission order; a replayed id points at the existing row.
batch_items = sa.Table(
    "batch_items",
    metadata,
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("batches.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("observation_id", sa.String(128), sa.ForeignKey("predictions.id"), nullable=False),
)

# Rows per multi-row statement: well under SQLite's and Postgres's bound-parameter limits.
ROWS_PER_STATEMENT = 500


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


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes (every time stored here is UTC); Postgres uses its session zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


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
        received_at=_utc(row.received_at),
        predicted_at=_utc_or_none(row.predicted_at),
        labelled_at=_utc_or_none(row.labelled_at),
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
    engine = sa.create_engine(url, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5})
    _ping_connections_back_from_idle(engine)
    return engine


# A connection reused within this many seconds is not pinged: under load, pool_pre_ping's round trip on every
# checkout cost a quarter of the gateway's single-submission throughput. After a pause it is pinged, so a
# database restarted meanwhile costs no error. Restarted under load, each pooled connection reused within the
# second fails once (a 503 with Retry-After in the gateway; a batch left queued for the redrive in a worker)
# and the pool replaces it.
PING_AFTER_IDLE_S = 1.0


def _ping_connections_back_from_idle(engine: Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _stamp_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out a new one.
            raise sa.exc.DisconnectionError("connection lost while idle") from error


def _insert(*, conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(predictions)
    return sqlite.insert(predictions)


def insert_queued(
    *, conn: Connection, observation_id: str, observation: dict[str, Any], now: datetime
) -> bool:
    """Store a new observation as queued; return False when the id already exists (nothing written)."""
    statement = (
        _insert(conn=conn)
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


def find_prediction(*, conn: Connection, observation_id: str) -> PredictionRecord | None:
    """Return the stored record of one observation, or None."""
    row = conn.execute(sa.select(predictions).where(predictions.c.id == observation_id)).first()
    return _record(row) if row is not None else None


# On Postgres, batches travel as arrays: one statement whatever the row count, compiled once.
_PG_SAVE_PREDICTIONS = sa.text(
    """
    UPDATE predictions AS p
    SET status = 'done', proba = v.proba, prediction = v.prediction, model_version = :model_version,
        predicted_at = :now, attempts = p.attempts + 1
    FROM unnest(CAST(:ids AS text[]), CAST(:probas AS float8[]), CAST(:predictions AS boolean[]))
         AS v(id, proba, prediction)
    WHERE p.id = v.id AND p.status = 'queued'
    """
)
# Bulk intake on Postgres: rows are copied into a session-local staging table (COPY is several times
# faster than any INSERT), then moved into predictions by one statement that skips ids already stored.
_PG_CREATE_STAGING = sa.text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS staged_observations (id text, observation text)
    ON COMMIT DELETE ROWS
    """
)
_PG_INSERT_STAGED = sa.text(
    """
    WITH staged AS (DELETE FROM staged_observations RETURNING id, observation)
    INSERT INTO predictions (id, observation, status, attempts, received_at, published_at, batch_id)
    SELECT staged.id, CAST(staged.observation AS jsonb), 'queued', 0, :now, :now, :batch_id
    FROM staged
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)


def _pg_copy(*, conn: Connection, target: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into target ("table (columns)") on the connection's own transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def save_predictions(
    *, conn: Connection, results: Sequence[PredictionResult], model_version: str, now: datetime
) -> int:
    """Write a batch of results in one statement; a row already finished keeps its first result."""
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
        {"result_id": r.id, "result_proba": r.proba, "result_prediction": r.prediction} for r in ordered
    ]
    return conn.execute(statement, params).rowcount


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


def claim_stale_queued(
    *, conn: Connection, published_before: datetime, now: datetime, limit: int
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


def count_by_status(*, conn: Connection) -> dict[str, int]:
    """Return how many observations are in each status."""
    rows = conn.execute(sa.select(predictions.c.status, sa.func.count()).group_by(predictions.c.status)).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(total) for status, total in rows})
    return counts


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
    return Backlog(queued=queued, failed=failed, oldest_queued_at=_utc_or_none(oldest))


def count_rows(*, conn: Connection, observation_ids: Iterable[str] | None = None) -> int:
    """Return the number of stored observations (all, or among the given ids)."""
    query = sa.select(sa.func.count()).select_from(predictions)
    if observation_ids is not None:
        query = query.where(predictions.c.id.in_(list(observation_ids)))
    return int(conn.execute(query).scalar_one())


def ping(*, conn: Connection) -> None:
    """Run a trivial query; raise if the database cannot answer."""
    conn.execute(sa.text("SELECT 1"))


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


def _chunks(rows: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def insert_queued_many(
    *,
    conn: Connection,
    observations: Sequence[QueuedObservation],
    batch_id: str | None,
    now: datetime,
) -> set[str]:
    """Store many observations as queued (COPY on Postgres, multi-row INSERTs); return the ids created."""
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_CREATE_STAGING)
        _pg_copy(
            conn=conn,
            target="staged_observations (id, observation)",
            rows=((o.id, json.dumps(o.observation)) for o in observations),
        )
        return set(conn.execute(_PG_INSERT_STAGED, {"now": now, "batch_id": batch_id}).scalars())
    created: set[str] = set()
    for chunk in _chunks(observations):
        rows = [
            {
                "id": o.id,
                "observation": o.observation,
                "status": QUEUED,
                "attempts": 0,
                "received_at": now,
                "published_at": now,
                "batch_id": batch_id,
            }
            for o in chunk
        ]
        statement = (
            _insert(conn=conn)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(predictions.c.id)
        )
        created.update(conn.execute(statement).scalars())
    return created


def find_observations(*, conn: Connection, observation_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Return the stored observation of each id that exists."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(observation_ids):
        rows = conn.execute(
            sa.select(predictions.c.id, predictions.c.observation).where(predictions.c.id.in_(chunk))
        )
        found.update({row.id: row.observation for row in rows})
    return found


def create_batch(*, conn: Connection, batch_id: str, now: datetime) -> None:
    """Open a bulk submission; its counts are filled in by finish_batch."""
    conn.execute(batches.insert().values(id=batch_id, created_at=now, items=0, accepted=0, rejected=0))


def add_batch_items(*, conn: Connection, batch_id: str, positions: Sequence[tuple[int, str]]) -> None:
    """Record accepted items (position in the submission, observation id): COPY, or multi-row INSERTs."""
    if conn.dialect.name == "postgresql":
        _pg_copy(
            conn=conn,
            target="batch_items (batch_id, position, observation_id)",
            rows=((batch_id, p, i) for p, i in positions),
        )
        return
    for chunk in _chunks(positions):
        conn.execute(
            batch_items.insert().values(
                [{"batch_id": batch_id, "position": p, "observation_id": i} for p, i in chunk]
            )
        )


def finish_batch(*, conn: Connection, batch_id: str, items: int, accepted: int, rejected: int) -> None:
    """Store the final counts of a bulk submission's intake."""
    conn.execute(
        batches.update()
        .where(batches.c.id == batch_id)
        .values(items=items, accepted=accepted, rejected=rejected)
    )


def iter_batch_queued(
    *, conn: Connection, batch_id: str, chunk_size: int
) -> Iterable[list[QueuedObservation]]:
    """Yield, chunk by chunk, the still-queued observations a batch created (for publishing)."""
    query = (
        sa.select(predictions.c.id, predictions.c.observation)
        .where(predictions.c.batch_id == batch_id, predictions.c.status == QUEUED)
        .execution_options(yield_per=chunk_size)
    )
    for partition in conn.execute(query).partitions(chunk_size):
        yield [QueuedObservation(id=row.id, observation=row.observation) for row in partition]


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
            latest.append(_utc(last))
    created_at = _utc(batch.created_at)
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
        yield row.position, _record(row)


def labelled_outcomes(*, conn: Connection) -> dict[str, dict[str, int]]:
    """Count finished, labelled predictions per model version: true/false positives and negatives."""
    rows = conn.execute(
        sa.select(
            predictions.c.model_version, predictions.c.prediction, predictions.c.true_class, sa.func.count()
        )
        .where(predictions.c.status == DONE, predictions.c.true_class.is_not(None))
        .group_by(predictions.c.model_version, predictions.c.prediction, predictions.c.true_class)
    ).all()
    names = {(True, True): "true_positive", (True, False): "false_positive",
             (False, True): "false_negative", (False, False): "true_negative"}  # fmt: skip
    outcomes: dict[str, dict[str, int]] = {}
    for version, predicted, actual, total in rows:
        counts = outcomes.setdefault(version, dict.fromkeys(names.values(), 0))
        counts[names[(bool(predicted), bool(actual))]] = int(total)
    return outcomes
