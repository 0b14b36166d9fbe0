"""Batches whose pool process died: split until the observation that kills its process is alone, then fail it.

A pool process can die in native code (a segfault, the kernel's out-of-memory killer) on one observation.
Requeued as it was, the batch would kill the next process too, for ever, its neighbours with it. Here the
messages of a lost batch are published again as two halves marked lost (by items and batch slices, a lone
slice by position); a marked message runs as a batch of its own; an observation lost alone is marked lost
once more, and at MAX_ATTEMPTS it is failed unpredicted.
"""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

from core.publishing import PUBLISH_ERRORS, message_contents, publish_message
from core.storage.records import BatchSlice
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
        """Publish the lost batch again in halves (a lone observation: once more), then ack the originals.

        A batch splits by its messages' items and slices; a lone slice splits by position. The halves go back
        to the lane the batch came from (a lane's worker consumes one queue, so a batch has one lane).
        """
        pieces = [piece for request in requests for piece in message_contents(request.kwargs).pieces]
        lost = 1
        if len(pieces) >= 2:
            groups = [pieces[: len(pieces) // 2], pieces[len(pieces) // 2 :]]
        elif pieces and isinstance(pieces[0], BatchSlice) and pieces[0].first < pieces[0].last:
            groups = [[half] for half in pieces[0].halves()]
        else:
            groups, lost = [pieces], times_lost(requests[0].kwargs) + 1
        lane = requests[0].delivery_info.get("routing_key") or None
        try:
            for group in groups:
                if group:
                    publish_message(
                        self.app,
                        queue=lane,
                        items=[piece for piece in group if not isinstance(piece, BatchSlice)],
                        slices=[piece for piece in group if isinstance(piece, BatchSlice)],
                        **{LOST: lost},
                    )
        except PUBLISH_ERRORS:
            super().on_lost(requests)  # the broker is down: requeued as they were, the redrive as backstop
            return
        for request in requests:
            request.acknowledge()
