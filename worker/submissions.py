"""Accept an observation: store it as queued (the database decides duplicates), then publish it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from worker.publishing import publish_observations
from worker.storage import PredictionRecord, QueuedObservation, find_prediction, insert_queued, utc_now

log = logging.getLogger(__name__)

PUBLISH_ERRORS = (KombuError, RedisError, OSError)


class Outcome(Enum):
    """How a submission ended."""

    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Submission:
    """The outcome of one submission, with the stored record and whether a message went out."""

    outcome: Outcome
    record: PredictionRecord
    published: bool


def submit_observation(
    *, engine: Engine, celery: Celery, observation_id: str, observation: dict[str, Any]
) -> Submission:
    """Commit the observation as queued, then publish it; an existing id is a replay or a conflict."""
    with engine.begin() as conn:
        created = insert_queued(conn, observation_id=observation_id, observation=observation, now=utc_now())
        record = find_prediction(conn, observation_id=observation_id)
    if record is None:
        raise RuntimeError(f"observation {observation_id!r} vanished between insert and read")
    if not created:
        outcome = Outcome.REPLAYED if record.observation == observation else Outcome.CONFLICT
        return Submission(outcome=outcome, record=record, published=False)
    try:
        publish_observations(celery, [QueuedObservation(id=observation_id, observation=observation)])
    except PUBLISH_ERRORS:
        # The row is committed: the redrive publishes it once the broker is back.
        log.warning("publish failed; left for the redrive", extra={"observation_id": observation_id})
        return Submission(outcome=Outcome.ACCEPTED, record=record, published=False)
    return Submission(outcome=Outcome.ACCEPTED, record=record, published=True)
