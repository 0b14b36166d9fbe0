"""Hand stored observations to the workers (one Celery message carries one or more), and count what waits."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from core.celery_app import PREDICT_TASK
from core.storage.records import QueuedObservation

# What a failed publish raises: the broker is down or unreachable.
PUBLISH_ERRORS = (KombuError, RedisError, OSError)

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
            # What logs, events and Flower show of a message: a count, not the stops themselves (and no repr
            # of every observation on each publish).
            argsrepr="()",
            kwargsrepr=f"{{'observations': <{len(chunk)}>}}",
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )


def waiting_messages(celery: Celery, queue_name: str) -> int:
    """Return how many messages wait in the broker queue (not counting those workers hold unacked)."""
    with celery.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue_name, passive=True)
        except connection.channel_errors:
            return 0  # never declared (a broker restarted empty): nothing waits
    return int(declared.message_count)


def held_messages(celery: Celery) -> int:
    """Return how many messages workers hold delivered but unacknowledged (Redis; 0 on other brokers).

    Redis keeps them in one hash per database, whatever their queue; another broker gives them back to the
    queue itself when their consumer dies.
    """
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        client, key = getattr(channel, "client", None), getattr(channel, "unacked_key", None)
        if client is None or key is None:
            return 0
        return int(client.hlen(key))
