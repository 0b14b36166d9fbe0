"""Publish accepted observations from a thread of the gateway process, many to a message under load."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import Celery

from core.publishing import PUBLISH_ERRORS, publish_observations
from core.storage.records import QueuedObservation

log = logging.getLogger(__name__)
# How long a message waits for observations whose requests are still on their way to the commit. Only then:
# alone, an observation goes out at once.
LINGER_S = 0.002


class Expected:
    """A submission on its way to the commit, which the publisher may wait a moment for."""

    def __init__(self, submit: Callable[[QueuedObservation], None], arrived: Callable[[], None]) -> None:
        self._submit = submit
        self._arrived = arrived
        self.delivered = False

    def deliver(self, observation: QueuedObservation) -> None:
        """Queue the committed observation for publishing (no longer expected from then on)."""
        if not self.delivered:
            self.delivered = True
            self._arrived()
        self._submit(observation)


class BackgroundPublisher:
    """Publish from a thread of its own, as many waiting observations per message as there are.

    A request only enqueues after its commit. Under load the waiting observations share messages (fewer
    messages, the cost the workers pay per message), and a message waits up to LINGER_S for the requests
    this process is still handling; alone, an observation goes out at once. What a dying process had not
    published is still queued in the database, and the redrive publishes it.
    """

    def __init__(
        self,
        celery: Celery,
        *,
        queue_name: str | None = None,
        max_per_message: int = 100,
        on_failure: Callable[[int], None] | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        self._celery = celery
        self._queue_name = queue_name
        self._max = max_per_message
        self._on_failure = on_failure
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._expected_lock = threading.Lock()
        self._expected = 0
        self._pid = -1
        # None wakes the publisher when a request it may be waiting for stored nothing.
        self._waiting: queue.SimpleQueue[QueuedObservation | None] = queue.SimpleQueue()

    def submit(self, observation: QueuedObservation) -> None:
        """Queue one committed observation for publishing."""
        if self._pid != os.getpid():
            self._start()  # first use in this process (gunicorn forks after the app is built)
        self._waiting.put(observation)

    @contextmanager
    def expecting(self) -> Iterator[Expected]:
        """Tell the publisher a submission is on its way to the commit while the block runs."""
        with self._expected_lock:
            self._expected += 1
        expected = Expected(self.submit, self._arrived)
        try:
            yield expected
        finally:
            if not expected.delivered:
                self._arrived()
                self._waiting.put(None)

    def _arrived(self) -> None:
        with self._expected_lock:
            self._expected -= 1

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
        deadline: float | None = None
        while len(batch) < self._max:
            try:
                taken = self._waiting.get_nowait()
            except queue.Empty:
                if self._expected <= 0:
                    break  # nothing on its way: waiting would only delay this message
                if deadline is None:
                    deadline = time.monotonic() + self._linger_s
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    taken = self._waiting.get(timeout=left)
                except queue.Empty:
                    break
            if taken is not None:
                batch.append(taken)
        return batch

    def _publish(self, batch: list[QueuedObservation]) -> None:
        try:
            publish_observations(self._celery, batch, queue=self._queue_name, per_message=self._max)
        except PUBLISH_ERRORS:
            log.warning("publish failed; left for the redrive", extra={"count": len(batch)})
            if self._on_failure is not None:
                self._on_failure(len(batch))

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is not None:
                self._publish(self._take(first))

    def _publish_waiting(self) -> None:
        while True:
            try:
                first = self._waiting.get_nowait()
            except queue.Empty:
                return
            if first is not None:
                self._publish(self._take(first))
