"""Read the messages waiting in a queue without taking them, on Redis or RabbitMQ."""

from __future__ import annotations

import base64
import json

import redis
from celery import Celery


def waiting_bodies(celery: Celery, broker_redis: redis.Redis | None, queue: str) -> list[bytes]:
    """Return the bodies of the messages waiting in queue, in queue order, leaving them there.

    broker_redis: the broker when it is Redis (None: RabbitMQ, through celery's connection).
    """
    if broker_redis is not None:
        waiting = broker_redis.lrange(queue, 0, -1)
        # Workers take from the right.
        return [base64.b64decode(json.loads(raw)["body"]) for raw in reversed(waiting)]
    # RabbitMQ: take each one unacknowledged, then close the channel, which gives them all back.
    bodies: list[bytes] = []
    with celery.connection_for_read() as connection:
        channel = connection.channel()
        try:
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                body = message.body
                bodies.append(body if isinstance(body, bytes) else body.encode())
        except connection.channel_errors:
            return []  # not declared (deleted, or nothing published since): nothing waits
        finally:
            if channel.is_open:
                channel.close()
    return bodies
