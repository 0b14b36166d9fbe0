"""Publish accepted observations from a thread of the gateway process, many to a message under load."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable

from celery import Celery

from core.publishing import PUBLISH_ERRORS, publish_observations
from core.storage.records import QueuedObservation

log = logging.getLogger(__name__)


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
