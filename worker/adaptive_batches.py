"""Micro-batches that grow with the load: the flush timer waits while every pool process is busy.

celery-batches flushes its buffer every flush_interval whatever the pool is doing. Under load that queues many
tiny batches behind a busy process, each paying predict_proba's fixed cost (milliseconds for one row). Here
a timer tick flushes only when a pool process is free (or the buffer holds flush_every messages): at light
load a message still leaves within flush_interval; under load, what arrived meanwhile goes out as one
bigger batch.

A free pool process may also wait for more: while messages arrive faster than hold_for_more_s, the oldest
buffered one waits for the next, at most hold_for_more_s (fewer, bigger batches at a moderate rate, where a
batch of one or two pays predict_proba's fixed cost per observation). A message that came after a gap as long
as the hold, or at a rate slower than it, does not wait.

A process counts as busy from the moment a batch is handed to the pool until the batch returns or its process
is reported lost. A batch that went down unread with a killed pool process gets neither report from the pool:
it stops counting once a batch handed out after it has been taken by a process (else one such loss left the
pool "busy" for good, and every single waited the longest hold, 1 s, until the worker restarted).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from time import monotonic
from typing import Any

from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task


@dataclass(eq=False)
class HandedBatch:
    """A batch handed to the pool: when, and whether a pool process has taken it (compared by identity)."""

    sent_at: float
    taken: bool = False


class AdaptiveBatches(Batches):  # type: ignore[misc]
    """Batches whose timer flushes only while a pool process is free to take the batch."""

    abstract = True
    # However busy the pool seems, a waiting message leaves after this long (a safety net, should the count
    # of batches in flight ever be wrong).
    longest_hold_s = 1.0
    _handed: set[HandedBatch] | None = None  # batches handed to the pool and not returned (per task)
    # How long the oldest buffered message may wait for the next one while they arrive that fast (0: never).
    hold_for_more_s = 0.0
    _tref: Any  # celery-batches' flush timer entry, or None
    _last_flush = 0.0
    _last_arrival = 0.0
    _last_interval = float("inf")
    _oldest_arrival = 0.0
    # Moving average of the time between messages (s); starts as "none expected soon".
    _mean_interval = float("inf")

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:
        """Build the message handler, as celery-batches does, with a flush timer armed afresh.

        The consumer builds its strategies again each time it (re)connects to the broker, after the worker has
        cleared its event-loop timers. celery-batches re-arms its flush timer only when it holds none, and it
        would still hold the cleared one: batches would then leave only at flush_every messages. Forgetting it
        here lets the next message arm a live timer.
        """
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        handle = super().Strategy(task, app, consumer)

        def handle_and_time(*args: Any, **kwargs: Any) -> None:
            self._note_arrival()
            handle(*args, **kwargs)

        return handle_and_time

    def _note_arrival(self) -> None:
        now = monotonic()
        if self._last_arrival:
            interval = self._last_interval = now - self._last_arrival
            first = self._mean_interval == float("inf")
            self._mean_interval = interval if first else self._mean_interval * 0.8 + interval * 0.2
        if self._buffer.empty():
            self._oldest_arrival = now
        self._last_arrival = now

    def _next_expected_in_time(self) -> bool:
        """Return whether the next message, and the next tick to flush it, come before the hold runs out."""
        if self.hold_for_more_s <= 0 or self._buffer.empty():
            return False
        now = monotonic()
        # The next message is at least as far off as the usual gap, the last gap (a burst is over once a
        # message comes after a long one) and the quiet since the last message; it leaves at a tick.
        expected_in = max(self._mean_interval, self._last_interval, now - self._last_arrival)
        next_tick_in = float(self.flush_interval)
        return now - self._oldest_arrival + max(expected_in, next_tick_in) < self.hold_for_more_s

    def _all_processes_busy(self) -> bool:
        processes = getattr(self._pool, "num_processes", None) or 1
        return len(self._batches_in_pool()) >= processes

    def _batches_in_pool(self) -> set[HandedBatch]:
        if self._handed is None:
            self._handed = set()
        return self._handed

    def _forget_batches_lost_before(self, taken: HandedBatch) -> None:
        """A batch handed out before this one that no process has taken went down, unread, with a killed
        pool process (the pool reports nothing then): stop counting it."""
        self._handed = {
            batch for batch in self._batches_in_pool() if batch.taken or batch.sent_at >= taken.sent_at
        }

    def _do_flush(self) -> None:
        if (
            self._all_processes_busy()
            and self._buffer.qsize() < self.flush_every
            and monotonic() - self._last_flush < self.longest_hold_s
        ):
            return  # keep buffering; the timer ticks again
        if self._buffer.qsize() < self.flush_every and self._next_expected_in_time():
            return
        self._last_flush = monotonic()
        super()._do_flush()

    def runs_alone(self, request: Request) -> bool:
        """Return whether a message must be a batch of its own (never merged with others)."""
        return False

    def on_lost(self, requests: list[Request]) -> None:
        """Handle the messages of a batch whose pool process died: requeue them now.

        Rather than after the visibility timeout; first write wins, so a row finished twice is written once.
        """
        for request in requests:
            request.reject(requeue=True)

    def flush(self, requests: Collection[Request]) -> Any:
        """Hand the requests to the pool as one batch (as celery-batches does), those that run alone apart."""
        alone = [r for r in requests if self.runs_alone(r)]
        for request in alone:
            self._apply([request])
        together = [r for r in requests if not self.runs_alone(r)]
        return self._apply(together) if together else None

    def _apply(self, requests: list[Request]) -> Any:
        """Send one batch to the pool; count it until it returns."""
        acks_late = [r for r in requests if r.task.acks_late]
        acks_early = [r for r in requests if not r.task.acks_late]

        handed = HandedBatch(sent_at=monotonic())

        def on_accepted(pid: int, time_accepted: float) -> None:
            handed.taken = True
            self._forget_batches_lost_before(handed)
            for request in acks_early:
                request.acknowledge()

        def on_return(result: Any) -> None:
            self._batches_in_pool().discard(handed)
            for request in acks_late:
                request.acknowledge()

        def on_error(*_: Any) -> None:
            # The pool process was lost mid-batch (reject_on_worker_lost).
            self._batches_in_pool().discard(handed)
            self.on_lost(acks_late)

        self._batches_in_pool().add(handed)
        try:
            return self._pool.apply_async(
                apply_batches_task,
                (self, ([SimpleRequest.from_request(r) for r in requests],), 0, None),
                accept_callback=on_accepted,
                callback=on_return,
                error_callback=on_error,
            )
        except BaseException:
            self._batches_in_pool().discard(handed)
            raise
