"""Accept an observation: store it as queued (the database decides duplicates), then publish it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy.engine import Engine

from core.storage.observations import find_prediction, insert_queued
from core.storage.records import PredictionRecord, QueuedObservation, utc_now

log = logging.getLogger(__name__)


class Outcome(Enum):
    """How a submission ended."""

    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Submission:
    """The outcome of one submission, with the stored record."""

    outcome: Outcome
    record: PredictionRecord


def submit_observation(
    *,
    engine: Engine,
    publish: Callable[[QueuedObservation], None],
    observation_id: str,
    observation: dict[str, Any],
) -> Submission:
    """Commit the observation as queued, then publish it; an existing id is a replay or a conflict."""
    now = utc_now()
    with engine.connect() as conn:
        # One statement, committed when it returns: no BEGIN and COMMIT round trips around it.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        created = insert_queued(conn=conn, observation_id=observation_id, observation=observation, now=now)
        existing = None if created else find_prediction(conn=conn, observation_id=observation_id)
    if existing is not None:
        outcome = Outcome.REPLAYED if existing.observation == observation else Outcome.CONFLICT
        return Submission(outcome=outcome, record=existing)
    if not created:
        raise RuntimeError(f"observation {observation_id!r} neither inserted nor found")
    # The commit is done: from here on the observation cannot be lost, whatever publishing does.
    queued = QueuedObservation(id=observation_id, observation=observation)
    publish(queued)
    return Submission(outcome=Outcome.ACCEPTED, record=PredictionRecord.just_queued(queued, received_at=now))
