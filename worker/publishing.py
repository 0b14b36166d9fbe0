"""Hand stored observations to the workers: one Celery message carries one or more observations."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from worker.celery_app import PREDICT_TASK
from worker.storage import QueuedObservation

# Fail fast when the broker is down: the row is committed and the redrive will publish it later.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.05, "interval_step": 0.1, "interval_max": 0.2}


def publish_observations(
    celery: Celery, observations: Sequence[QueuedObservation], *, per_message: int = 1
) -> None:
    """Publish observations for prediction, per_message of them in each message."""
    for start in range(0, len(observations), per_message):
        chunk = observations[start : start + per_message]
        celery.send_task(
            PREDICT_TASK,
            kwargs={"observations": [{"id": o.id, "observation": o.observation} for o in chunk]},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
