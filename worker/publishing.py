"""Hand stored observations to the workers: one Celery message carries one or more observations."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from worker.celery_app import PREDICT_TASK
from worker.storage import QueuedObservation

log = logging.getLogger(__name__)

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
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )


class BackgroundPublisher:
    """Publish from a thread of its own, as many waiting observations per message as there are.

    A request only enqueues after its commit. Under load the waiting observations share messages (fewer
    messages, the cost the workers pay per message); alone, an observation goes out at once. What a dying
    process had not published is still queued in the database, and the redrive publishes it.
    """

    def __init__(
        self,
        celery: Celery,
        *,
        max_per_message: int = 100,
        on_failure: Callable[[int], None] | None = None,
    ) -> None:
        self._celery = celery
        self._max = max_per_message
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._pid = -1
        self._waiting: queue.SimpleQueue[QueuedObservation] = queue.SimpleQueue()

    def submit(self, observation: QueuedObservation) -> None:
        """Queue one committed observation for publishing."""
        if self._pid != os.getpid():
            self._start()  # first use in this process (gunicorn forks after the app is built)
        self._waiting.put(observation)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._waiting = queue.SimpleQueue()
            threading.Thread(target=self._run, name="publisher", daemon=True).start()
            atexit.register(self._publish_waiting)
            self._pid = os.getpid()

    def _take(self, first: QueuedObservation) -> list[QueuedObservation]:
        batch = [first]
        while len(batch) < self._max:
            try:
                batch.append(self._waiting.get_nowait())
            except queue.Empty:
                break
        return batch

    def _publish(self, batch: list[QueuedObservation]) -> None:
        try:
            publish_observations(self._celery, batch, per_message=self._max)
        except PUBLISH_ERRORS:
            log.warning("publish failed; left for the redrive", extra={"count": len(batch)})
            if self._on_failure is not None:
                self._on_failure(len(batch))

    def _run(self) -> None:
        while True:
            self._publish(self._take(self._waiting.get()))

    def _publish_waiting(self) -> None:
        try:
            first = self._waiting.get_nowait()
        except queue.Empty:
            return
        self._publish(self._take(first))
