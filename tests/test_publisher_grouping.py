"""The background publisher: a lone observation goes out at once; in-flight ones share a message."""

from __future__ import annotations

import threading
import time
from typing import Any

from core.storage.records import QueuedObservation
from gateway.server.publisher import BackgroundPublisher


class RecordingCelery:
    """Stands in for the Celery app: keeps each message's observation ids and when it was sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, list[str]]] = []
        self.sent = threading.Event()

    def send_task(self, _name: str, *, kwargs: dict[str, Any], **_options: Any) -> None:
        self.messages.append((time.monotonic(), [item["id"] for item in kwargs["observations"]]))
        self.sent.set()


def queued(observation_id: str) -> QueuedObservation:
    return QueuedObservation(id=observation_id, observation={"hour": 1})


def wait_for_ids(celery: RecordingCelery, count: int) -> list[list[str]]:
    deadline = time.monotonic() + 5
    while sum(len(ids) for _, ids in celery.messages) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    return [ids for _, ids in celery.messages]


def test_a_lone_observation_is_published_without_lingering() -> None:
    celery = RecordingCelery()
    publisher = BackgroundPublisher(celery, linger_s=1.0)
    started = time.monotonic()
    with publisher.expecting() as expected:
        expected.deliver(queued("alone"))
    assert wait_for_ids(celery, 1) == [["alone"]]
    assert celery.messages[0][0] - started < 0.5  # nothing else was on its way: no linger


def test_an_observation_still_on_its_way_joins_the_message() -> None:
    celery = RecordingCelery()
    publisher = BackgroundPublisher(celery, linger_s=1.0)
    with publisher.expecting() as later:
        with publisher.expecting() as first:
            first.deliver(queued("first"))
        time.sleep(0.05)  # the second request is still before its commit
        later.deliver(queued("second"))
    assert wait_for_ids(celery, 2) == [["first", "second"]]


def test_a_request_that_stores_nothing_stops_the_wait() -> None:
    celery = RecordingCelery()
    publisher = BackgroundPublisher(celery, linger_s=5.0)
    started = time.monotonic()
    with publisher.expecting():  # a replay, a conflict or a 422: never delivers
        with publisher.expecting() as first:
            first.deliver(queued("first"))
        time.sleep(0.05)
    assert wait_for_ids(celery, 1) == [["first"]]
    assert celery.messages[0][0] - started < 2.0


def test_the_linger_is_bounded() -> None:
    celery = RecordingCelery()
    publisher = BackgroundPublisher(celery, linger_s=0.05)
    with publisher.expecting():
        with publisher.expecting() as first:
            first.deliver(queued("first"))
        assert wait_for_ids(celery, 1) == [["first"]]  # sent while the other is still on its way
