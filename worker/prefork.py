"""The prefork pool, told to look for dead pool processes every half second instead of every five.

A pool process killed in native code (the poison observations of worker.lost_batches, the out-of-memory
killer) should be replaced, and its batch handed back, at once. Celery's AsynPool watches each process's
exit sentinel for that, but after a killed process left a job half-written to it, the exit of the next one
was often noticed only at the pool's 5-s maintenance tick (seen in the worker's logs: a 41-row batch with one
poison row took 25-80 s to isolate, ~5 s per kill; with this tick, 3 s). Maintenance is cheap: it polls the
processes' exit codes and restarts the dead ones. It is the pool Celery runs on an event loop, as it does
with Redis and RabbitMQ (without one, prefork falls back to billiard's blocking pool: no change then).
"""

from __future__ import annotations

from collections.abc import Callable

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

MAINTAIN_EVERY_S = 0.5


class PromptlyMaintainedAsynPool(AsynPool):  # type: ignore[misc]
    """AsynPool whose maintenance (reap dead processes, start replacements) runs every MAINTAIN_EVERY_S."""

    @property
    def timers(self) -> dict[Callable[[], None], float]:
        """Return the event-loop timers the pool registers: its maintenance, at the shorter interval."""
        return {self.maintain_pool: MAINTAIN_EVERY_S}


class PromptPrefork(TaskPool):  # type: ignore[misc]
    """Celery's prefork pool with PromptlyMaintainedAsynPool inside; set as worker_pool in worker.main."""

    Pool = PromptlyMaintainedAsynPool
