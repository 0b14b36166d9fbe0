"""Batches whose pool process died: split until the observation that kills its process is alone, then fail it.

A pool process can die in native code (a segfault, the kernel's out-of-memory killer) on one observation.
Requeued as it was, the batch would kill the next process too, for ever, its neighbours with it. Here the
messages of a lost batch are published again as two halves marked lost; a marked message runs as a batch
of its own; an observation lost alone is marked lost once more, and at MAX_ATTEMPTS it is failed unpredicted.
"""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

from core.publishing import PUBLISH_ERRORS, PUBLISH_RETRY_POLICY
from worker.adaptive_batches import AdaptiveBatches

LOST = "lost"


def times_lost(kwargs: dict[str, Any]) -> int:
    """Return how many times a message's observations went down with a pool process (0: never)."""
    lost = kwargs.get(LOST, 0)
    return lost if type(lost) is int and lost > 0 else 0


class IsolatingBatches(AdaptiveBatches):
    """Adaptive batches that isolate the observation a pool process dies on."""

    abstract = True

    def runs_alone(self, request: Request) -> bool:
        """Return whether the message was in a lost batch (so it must not take others down with it)."""
        return times_lost(request.kwargs) > 0

    def on_lost(self, requests: list[Request]) -> None:
        """Publish the lost batch again in halves (a lone observation: once more), then ack the originals."""
        items = [item for request in requests for item in request.kwargs.get("observations", [])]
        if len(items) == 1:
            groups, lost = [items], times_lost(requests[0].kwargs) + 1
        else:
            groups, lost = [items[: len(items) // 2], items[len(items) // 2 :]], 1
        try:
            for group in groups:
                if group:
                    self.app.send_task(
                        self.name,
                        kwargs={"observations": group, LOST: lost},
                        retry=True,
                        retry_policy=PUBLISH_RETRY_POLICY,
                    )
        except PUBLISH_ERRORS:
            super().on_lost(requests)  # the broker is down: requeued as they were, the redrive as backstop
            return
        for request in requests:
            request.acknowledge()
