"""What storage hands back: stored records, computed results, queued observations; times in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from core.storage.tables import QUEUED


def utc_now() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return a stored time as aware UTC (SQLite hands back naive times; every time stored here is UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    """Return as_utc(value), or None."""
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class QueuedObservation:
    """An observation still waiting for a prediction, as carried in a task message.

    version: the bundle version whose feature spec accepted it, which must predict it (None on rows stored
    before rollouts existed: the stable version predicts those).
    batch_id: the batch it came in, which puts it on the bulk lane; None for a single submission (the
    interactive lane). Set where the lane matters (the redrive); never carried in a message.
    """

    id: str
    observation: dict[str, Any]
    version: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class BatchSlice:
    """A batch's accepted items from position first to last (both included), as messages refer to them."""

    batch_id: str
    first: int
    last: int

    def halves(self) -> list[BatchSlice]:
        """Split in two by position (one slice when it spans a single position)."""
        if self.first >= self.last:
            return [self]
        middle = (self.first + self.last) // 2
        return [
            BatchSlice(self.batch_id, self.first, middle),
            BatchSlice(self.batch_id, middle + 1, self.last),
        ]


@dataclass(frozen=True)
class PredictionResult:
    """What a worker computed for one observation."""

    id: str
    proba: float
    prediction: bool


@dataclass(frozen=True)
class PredictionRecord:
    """One stored observation and what became of it."""

    id: str
    observation: dict[str, Any]
    status: str
    proba: float | None
    prediction: bool | None
    model_version: str | None
    accepted_version: str | None
    failure_reason: str | None
    attempts: int
    true_class: bool | None
    received_at: datetime
    predicted_at: datetime | None
    labelled_at: datetime | None
    # The upload it came in, if any: a long-poll on it waits for its batch's notices (core.result_notices).
    batch_id: str | None = None

    @classmethod
    def just_queued(cls, observation: QueuedObservation, received_at: datetime) -> PredictionRecord:
        """Return the record of an observation stored as queued a moment ago (as insert_queued writes it)."""
        return cls(
            id=observation.id, observation=observation.observation, status=QUEUED, proba=None,
            prediction=None, model_version=None, accepted_version=observation.version, failure_reason=None,
            attempts=0, true_class=None,
            received_at=received_at, predicted_at=None, labelled_at=None,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> PredictionRecord:
        """Return the record of a row of the predictions table."""
        return cls(
            id=row.id,
            observation=row.observation,
            status=row.status,
            proba=row.proba,
            prediction=row.prediction,
            model_version=row.model_version,
            accepted_version=row.accepted_version,
            failure_reason=row.failure_reason,
            attempts=row.attempts,
            true_class=row.true_class,
            received_at=as_utc(row.received_at),
            predicted_at=as_utc_or_none(row.predicted_at),
            labelled_at=as_utc_or_none(row.labelled_at),
            batch_id=row.batch_id,
        )
