"""What tests read and change in the database directly: counts of stored rows, and time made to pass."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.tables import STATUSES, api_keys, batches, predictions


def count_by_status(*, conn: Connection) -> dict[str, int]:
    """Return how many observations are in each status."""
    rows = conn.execute(sa.select(predictions.c.status, sa.func.count()).group_by(predictions.c.status)).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(total) for status, total in rows})
    return counts


def count_rows(*, conn: Connection, observation_ids: Iterable[str] | None = None) -> int:
    """Return the number of stored observations (all, or among the given ids)."""
    query = sa.select(sa.func.count()).select_from(predictions)
    if observation_ids is not None:
        query = query.where(predictions.c.id.in_(list(observation_ids)))
    return int(conn.execute(query).scalar_one())


def _earlier(conn: Connection, column: Any, seconds: float) -> Any:
    """Return column moved seconds into the past, in SQL (SQLite keeps times as text, SQLAlchemy's format)."""
    if conn.dialect.name == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", column, f"-{seconds} seconds")
    return column - timedelta(seconds=seconds)


def backdate_publish_times(
    *, conn: Connection, seconds: float, observation_ids: Iterable[str] = (), batch_id: str | None = None
) -> None:
    """Move the last publish of some rows (or of a batch) seconds into the past, as if time had passed."""
    ids = list(observation_ids)
    if ids:
        conn.execute(
            predictions.update()
            .where(predictions.c.id.in_(ids))
            .values(published_at=_earlier(conn, predictions.c.published_at, seconds))
        )
    if batch_id is not None:
        conn.execute(
            batches.update()
            .where(batches.c.id == batch_id)
            .values(published_at=_earlier(conn, batches.c.published_at, seconds))
        )


def backdate_receipt_times(*, conn: Connection, seconds: float, observation_ids: Iterable[str]) -> None:
    """Make some observations seem to have arrived seconds earlier than they did."""
    conn.execute(
        predictions.update()
        .where(predictions.c.id.in_(list(observation_ids)))
        .values(received_at=_earlier(conn, predictions.c.received_at, seconds))
    )


def backdate_batch_creation(*, conn: Connection, seconds: float, batch_id: str) -> None:
    """Make a batch seem to have been created seconds earlier than it was."""
    conn.execute(
        batches.update()
        .where(batches.c.id == batch_id)
        .values(created_at=_earlier(conn, batches.c.created_at, seconds))
    )


def api_key_table_text(*, conn: Connection) -> str:
    """Return every stored value of every API key row, as one text (to look for what must not be there)."""
    rows = conn.execute(sa.select(api_keys)).all()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


def some_observation_ids(*, conn: Connection, limit: int, labelled: bool) -> list[str]:
    """Return up to limit stored ids, with or without a true outcome, in id order."""
    has_label = predictions.c.true_class.is_not(None) if labelled else predictions.c.true_class.is_(None)
    rows = conn.execute(sa.select(predictions.c.id).where(has_label).order_by(predictions.c.id).limit(limit))
    return list(rows.scalars())


def backdate_labels(*, conn: Connection, seconds: float, observation_ids: Iterable[str]) -> None:
    """Make the true outcomes of some observations seem to have arrived seconds earlier than they did."""
    conn.execute(
        predictions.update()
        .where(predictions.c.id.in_(list(observation_ids)))
        .values(labelled_at=_earlier(conn, predictions.c.labelled_at, seconds))
    )


def predicted_before_batch_finished(*, conn: Connection, batch_id: str, other_batch_id: str) -> int:
    """Count the rows of batch_id predicted no later than the last prediction of other_batch_id."""
    other_last = (
        sa.select(sa.func.max(predictions.c.predicted_at))
        .where(predictions.c.batch_id == other_batch_id)
        .scalar_subquery()
    )
    query = sa.select(sa.func.count()).where(
        predictions.c.batch_id == batch_id, predictions.c.predicted_at <= other_last
    )
    return int(conn.execute(query).scalar_one())
