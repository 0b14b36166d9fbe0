"""Accept an observation: store it as queued (the database decides duplicates), then publish it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.storage.observations import find_prediction, insert_queued
from core.storage.records import PredictionRecord, QueuedObservation, utc_now
from worker.schemas import valid_observation_id

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
    version: str | None = None,
) -> Submission:
    """Commit the observation as queued, then publish it; an existing id is a replay or a conflict.

    version: the model version whose schema accepted it, stored with it and published with it.
    """
    now = utc_now()
    with engine.connect() as conn:
        # One statement, committed when it returns: no BEGIN and COMMIT round trips around it.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        created = insert_queued(
            conn=conn,
            observation_id=observation_id,
            observation=observation,
            now=now,
            accepted_version=version,
        )
        existing = None if created else find_prediction(conn=conn, observation_id=observation_id)
    if existing is not None:
        outcome = Outcome.REPLAYED if existing.observation == observation else Outcome.CONFLICT
        return Submission(outcome=outcome, record=existing)
    if not created:
        raise RuntimeError(f"observation {observation_id!r} neither inserted nor found")
    # The commit is done: from here on the observation cannot be lost, whatever publishing does.
    queued = QueuedObservation(id=observation_id, observation=observation, version=version)
    publish(queued)
    return Submission(outcome=Outcome.ACCEPTED, record=PredictionRecord.just_queued(queued, received_at=now))


def _as_json(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None


def stored_replay(*, engine: Engine, body: Any) -> PredictionRecord | None:
    """Return the stored record when body resends a stored id with exactly its observation, else None.

    For a body the schema of the version its id lands on now refused: it was accepted by another version
    before the rollout changed, and a replay answers with the stored state whatever serves now. Compared as
    JSON, so true is not 1.
    """
    if not (
        isinstance(body, dict)
        and body.keys() == {"id", "observation"}
        and isinstance(body["id"], str)
        and isinstance(body["observation"], dict)
        and valid_observation_id(body["id"])
    ):
        return None
    try:
        with engine.connect() as conn:
            record = find_prediction(conn=conn, observation_id=body["id"])
    except SQLAlchemyError:
        return None  # the body is refused for what it is; the database is not asked to excuse it
    if record is None:
        return None
    sent = _as_json(body["observation"])
    return record if sent is not None and sent == _as_json(record.observation) else None
