"""Hand stored observations to the workers, and count what waits.

A prediction message carries observations (a single submission's, the redrive's) or refers to stored ones:
slices of a batch's accepted items by position, which the worker reads in one query. Bulk work then travels
as a few bytes per 500 rows instead of the rows themselves, and the gateway never reads a batch back.

Work travels in two lanes, each a queue with workers of its own: single submissions on the interactive lane
(QUEUE_NAME), batch rows on the bulk lane (<QUEUE_NAME>.bulk), so a single never waits behind an upload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from amqp.exceptions import AMQPError
from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from core.celery_app import PREDICT_TASK
from core.settings import Settings
from core.storage.backlog import LANES
from core.storage.records import BatchSlice, QueuedObservation

# What a failed publish raises: the broker is down or unreachable.
PUBLISH_ERRORS = (KombuError, RedisError, AMQPError, OSError)
# RabbitMQ's management API answers in milliseconds; past this the redrive takes the count as unknown.
MANAGEMENT_TIMEOUT_S = 3.0

# Fail fast when the broker is down: the row is committed and the redrive will publish it later.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.05, "interval_step": 0.1, "interval_max": 0.2}


# The keys of a prediction message's kwargs.
OBSERVATIONS, SLICES = "observations", "slices"


@dataclass(frozen=True)
class MessageContents:
    """What one prediction message carries: observation items ({id, observation, version}) and batch slices.

    An item's version is the bundle version that accepted it; items published before rollouts have none.
    """

    items: list[Any]
    slices: list[BatchSlice]

    @property
    def pieces(self) -> list[Any]:
        """Items and slices in one list: the units a lost batch is split by."""
        return [*self.items, *self.slices]


def _slice_of(raw: Any) -> BatchSlice | None:
    if (
        isinstance(raw, list)
        and len(raw) == 3
        and isinstance(raw[0], str)
        and all(type(position) is int for position in raw[1:])
    ):
        return BatchSlice(raw[0], raw[1], raw[2])
    return None


def message_contents(kwargs: dict[str, Any]) -> MessageContents:
    """Read a prediction message's kwargs; a malformed slice is dropped (its rows stay for the redrive)."""
    items = kwargs.get(OBSERVATIONS, [])
    slices = [_slice_of(raw) for raw in kwargs.get(SLICES, [])]
    return MessageContents(
        items=items if isinstance(items, list) else [],
        slices=[s for s in slices if s is not None],
    )


def publish_message(
    celery: Celery,
    *,
    queue: str | None = None,
    items: Sequence[Any] = (),
    slices: Sequence[BatchSlice] = (),
    **extra: Any,
) -> None:
    """Publish one prediction message carrying these items and referring to these slices.

    queue: the lane's queue; None, Celery's default queue, which is the interactive lane (QUEUE_NAME).
    """
    kwargs: dict[str, Any] = dict(extra)
    if items:
        kwargs[OBSERVATIONS] = list(items)
    if slices:
        kwargs[SLICES] = [[s.batch_id, s.first, s.last] for s in slices]
    celery.send_task(
        PREDICT_TASK,
        kwargs=kwargs,
        # What logs, events and Flower show of a message: counts, not the stops themselves (and no repr of
        # every observation on each publish).
        argsrepr="()",
        kwargsrepr=f"{{'observations': <{len(items)}>, 'slices': <{len(slices)}>}}",
        queue=queue,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
    )


def publish_observations(
    celery: Celery,
    observations: Sequence[QueuedObservation],
    *,
    queue: str | None = None,
    per_message: int = 1,
) -> None:
    """Publish observations on queue (None: the interactive lane), per_message to a message, with versions."""
    for start in range(0, len(observations), per_message):
        chunk = observations[start : start + per_message]
        publish_message(celery, queue=queue, items=[observation_item(o) for o in chunk])


def publish_to_lanes(
    celery: Celery, observations: Sequence[QueuedObservation], *, settings: Settings, per_message: int = 1
) -> None:
    """Publish observations each on its own lane: a batch's rows on the bulk lane, singles on the other."""
    singles = [o for o in observations if o.batch_id is None]
    bulk = [o for o in observations if o.batch_id is not None]
    publish_observations(celery, singles, queue=settings.queue_name, per_message=per_message)
    publish_observations(celery, bulk, queue=settings.bulk_queue, per_message=per_message)


def observation_item(observation: QueuedObservation) -> dict[str, Any]:
    """Return the message item of one observation: {id, observation} and its version when it has one."""
    item: dict[str, Any] = {"id": observation.id, "observation": observation.observation}
    if observation.version is not None:
        item["version"] = observation.version
    return item


def waiting_in_lanes(celery: Celery, settings: Settings) -> dict[str, int]:
    """Return how many messages wait in each lane's queue, by lane name."""
    lanes = zip(LANES, settings.lane_queues, strict=True)
    return {lane: waiting_messages(celery, queue) for lane, queue in lanes}


def waiting_messages(celery: Celery, queue_name: str) -> int:
    """Return how many messages wait in the broker queue (not counting those workers hold unacked)."""
    with celery.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue_name, passive=True)
        except connection.channel_errors:
            return 0  # never declared (a broker restarted empty): nothing waits
    return int(declared.message_count)


def held_messages(celery: Celery, queue_names: Sequence[str], management_url: str = "") -> int | None:
    """Return how many messages of these queues workers hold delivered but unacknowledged; None when the
    broker does not say.

    Redis keeps them in one hash per database, whatever their queue. RabbitMQ counts them per queue but tells
    only its management API (management_url), not AMQP clients; without it, or when it does not answer, the
    count is unknown.
    """
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        client, key = getattr(channel, "client", None), getattr(channel, "unacked_key", None)
        if client is not None and key is not None:
            return int(client.hlen(key))
        virtual_host = connection.virtual_host
    if not management_url:
        return None
    held = 0
    for queue_name in queue_names:
        url = f"{management_url}/api/queues/{quote(virtual_host, safe='')}/{quote(queue_name, safe='')}"
        try:
            answer = requests.get(url, timeout=MANAGEMENT_TIMEOUT_S)
            if answer.status_code == 404:
                continue  # never declared (a broker restarted empty): nobody holds anything of it
            answer.raise_for_status()
            held += int(answer.json().get("messages_unacknowledged", 0))
        except (requests.RequestException, ValueError):
            return None
    return held
