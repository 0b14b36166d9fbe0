"""What the model monitor reads and keeps: inputs and calls over a window, live labels, its snapshots.

Every figure is aggregated in the database (grouped counts come back, never rows): the window's input values
are counted per feature and value in one pass, the probabilities per histogram bin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.storage.clock import database_time_ago
from core.storage.records import as_utc
from core.storage.tables import DONE, monitor_snapshots, predictions

OUTCOME_NAMES = {
    (True, True): "true_positive",
    (True, False): "false_positive",
    (False, True): "false_negative",
    (False, False): "true_negative",
}


def feature_value_counts(*, conn: Connection, window_s: float) -> dict[str, dict[str, int]]:
    """Count the observations received in the window per feature and value, values as canonical text.

    Canonical text: categories as sent, booleans "true"/"false", integers in decimal ("17").
    """
    if conn.dialect.name == "postgresql":
        field = sa.func.jsonb_each_text(predictions.c.observation).table_valued("key", "value")
        value: Any = field.c.value
    else:
        field = sa.func.json_each(predictions.c.observation).table_valued("key", "value", "type")
        # SQLite's JSON gives booleans as 1 and 0; its type column still says true or false.
        value = sa.case(
            (field.c.type.in_(("true", "false")), field.c.type), else_=sa.cast(field.c.value, sa.Text)
        )
    rows = conn.execute(
        sa.select(field.c.key, value, sa.func.count())
        .select_from(predictions)
        .join(field, sa.true())
        .where(predictions.c.received_at >= database_time_ago(conn=conn, seconds=window_s))
        .group_by(field.c.key, value)
    )
    counts: dict[str, dict[str, int]] = {}
    for key, text, total in rows:
        counts.setdefault(str(key), {})[str(text)] = int(total)
    return counts


@dataclass(frozen=True)
class ServedCalls:
    """What one model version answered for the observations received in a window."""

    model_version: str
    predictions: int
    positive_calls: int
    # Predictions per probability bin: bin index (0 .. bins-1) -> count.
    proba_counts: dict[int, int]

    @property
    def positive_share(self) -> float:
        return self.positive_calls / self.predictions if self.predictions else 0.0


def served_calls(*, conn: Connection, window_s: float, bins: int) -> list[ServedCalls]:
    """Return, per model version, the predictions of observations received in the window, binned by proba."""
    scaled = predictions.c.proba * bins
    floor = sa.func.floor(scaled) if conn.dialect.name == "postgresql" else sa.cast(scaled, sa.Integer)
    bin_index = (
        sa.func.least(floor, bins - 1) if conn.dialect.name == "postgresql" else sa.func.min(floor, bins - 1)
    )
    positive = sa.case((predictions.c.prediction.is_(True), 1), else_=0)
    rows = conn.execute(
        sa.select(predictions.c.model_version, bin_index, sa.func.count(), sa.func.sum(positive))
        .where(
            predictions.c.status == DONE,
            predictions.c.received_at >= database_time_ago(conn=conn, seconds=window_s),
        )
        .group_by(predictions.c.model_version, bin_index)
    ).all()
    found: dict[str, tuple[int, int, dict[int, int]]] = {}
    for version, index, total, positives in rows:
        count, calls, per_bin = found.get(version, (0, 0, {}))
        per_bin[int(index)] = int(total)
        found[version] = (count + int(total), calls + int(positives or 0), per_bin)
    return [
        ServedCalls(model_version=v, predictions=n, positive_calls=p, proba_counts=b)
        for v, (n, p, b) in sorted(found.items())
    ]


def labelled_outcomes(*, conn: Connection, window_s: float | None = None) -> dict[str, dict[str, int]]:
    """Count finished, labelled predictions per model version: true/false positives and negatives.

    With window_s, only the labels received in that window. The labelled rows have a partial index of their
    own (version, call, outcome): the count over all labels reads that index, not the table.
    """
    query = (
        sa.select(
            predictions.c.model_version, predictions.c.prediction, predictions.c.true_class, sa.func.count()
        )
        .where(predictions.c.true_class.is_not(None), predictions.c.status == DONE)
        .group_by(predictions.c.model_version, predictions.c.prediction, predictions.c.true_class)
    )
    return tally_outcomes(conn=conn, query=query, labelled_at=predictions.c.labelled_at, window_s=window_s)


def tally_outcomes(
    *, conn: Connection, query: sa.Select[Any], labelled_at: sa.ColumnElement[Any], window_s: float | None
) -> dict[str, dict[str, int]]:
    """Run a (version, call, outcome, count) query (with window_s: labels since then); count per version."""
    if window_s is not None:
        query = query.where(labelled_at >= database_time_ago(conn=conn, seconds=window_s))
    outcomes: dict[str, dict[str, int]] = {}
    for version, predicted, actual, total in conn.execute(query):
        counts = outcomes.setdefault(version, dict.fromkeys(OUTCOME_NAMES.values(), 0))
        counts[OUTCOME_NAMES[(bool(predicted), bool(actual))]] = int(total)
    return outcomes


@dataclass(frozen=True)
class MinuteActivity:
    """Observations received, and of those the ones predicted, in one minute."""

    minute: str
    received: int
    predicted: int


def activity_per_minute(*, conn: Connection, window_s: float) -> list[MinuteActivity]:
    """Return per minute (UTC, "YYYY-MM-DD HH:MM") the observations received and predicted in the window.

    Predictions are counted among the observations received in the window (found through that index).
    """
    if conn.dialect.name == "postgresql":

        def minute_of(column: Any) -> Any:
            return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD HH24:MI")
    else:

        def minute_of(column: Any) -> Any:
            return sa.func.strftime("%Y-%m-%d %H:%M", column)

    recent = predictions.c.received_at >= database_time_ago(conn=conn, seconds=window_s)
    received_minute = minute_of(predictions.c.received_at)
    predicted_minute = minute_of(predictions.c.predicted_at)
    received: dict[str, int] = {
        m: n
        for m, n in conn.execute(
            sa.select(received_minute, sa.func.count()).where(recent).group_by(received_minute)
        )
    }
    predicted: dict[str, int] = {
        m: n
        for m, n in conn.execute(
            sa.select(predicted_minute, sa.func.count())
            .where(recent, predictions.c.predicted_at.is_not(None))
            .group_by(predicted_minute)
        )
    }
    return [
        MinuteActivity(minute=m, received=int(received.get(m, 0)), predicted=int(predicted.get(m, 0)))
        for m in sorted(set(received) | set(predicted))
    ]


@dataclass(frozen=True)
class SnapshotRow:
    """One figure the monitor stored: which, of what, its value, and the observations it rests on."""

    taken_at: datetime
    window_s: int
    figure: str
    subject: str
    value: float
    observations: int


def save_snapshot(*, conn: Connection, rows: Iterable[SnapshotRow]) -> None:
    """Store one monitor run's figures."""
    values = [
        {
            "taken_at": row.taken_at,
            "window_s": row.window_s,
            "figure": row.figure,
            "subject": row.subject,
            "value": row.value,
            "observations": row.observations,
        }
        for row in rows
    ]
    if values:
        conn.execute(monitor_snapshots.insert(), values)


def _rows(result: Iterable[Any]) -> list[SnapshotRow]:
    return [
        SnapshotRow(
            taken_at=as_utc(r.taken_at),
            window_s=int(r.window_s),
            figure=r.figure,
            subject=r.subject,
            value=float(r.value),
            observations=int(r.observations),
        )
        for r in result
    ]


def latest_snapshot(*, conn: Connection) -> tuple[datetime | None, list[SnapshotRow]]:
    """Return when the monitor last stored figures, and those figures (None and [] if it never ran)."""
    newest = conn.execute(sa.select(sa.func.max(monitor_snapshots.c.taken_at))).scalar_one()
    if newest is None:
        return None, []
    rows = conn.execute(
        sa.select(monitor_snapshots)
        .where(monitor_snapshots.c.taken_at == newest)
        .order_by(monitor_snapshots.c.id)
    )
    return as_utc(newest), _rows(rows)


def snapshot_history(*, conn: Connection, figure: str, window_s: float) -> list[SnapshotRow]:
    """Return the stored figures of one kind over the window, oldest first (for lines over time)."""
    rows = conn.execute(
        sa.select(monitor_snapshots)
        .where(
            monitor_snapshots.c.figure == figure,
            monitor_snapshots.c.taken_at >= database_time_ago(conn=conn, seconds=window_s),
        )
        .order_by(monitor_snapshots.c.taken_at, monitor_snapshots.c.id)
    )
    return _rows(rows)


def purge_snapshots(*, conn: Connection, older_than_s: float) -> int:
    """Delete snapshots older than older_than_s; return how many."""
    result = conn.execute(
        monitor_snapshots.delete().where(
            monitor_snapshots.c.taken_at < database_time_ago(conn=conn, seconds=older_than_s)
        )
    )
    return int(result.rowcount or 0)
