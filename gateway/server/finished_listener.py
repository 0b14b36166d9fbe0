"""Listen, on the gateway's event loop, for the workers' notices of finished observations (Redis pub/sub)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

import redis.asyncio
from redis.exceptions import RedisError

from core.result_notices import BATCHES, notices_channel

log = logging.getLogger(__name__)
RESUBSCRIBE_AFTER_S = 1.0


class FinishedListener:
    """One subscription per gateway process; long-polls register the id they wait for and get an event."""

    def __init__(self, redis_url: str | None, queue_name: str) -> None:
        self._url = redis_url
        self._channel = notices_channel(queue_name)
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._waiting_batches: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Subscribe in the background (again, if the last subscription ended); call on the event loop."""
        if self._url is not None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._listen(self._url))

    async def stop(self) -> None:
        """End the subscription."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def expect(self, observation_id: str, batch_id: str | None = None) -> Iterator[asyncio.Event]:
        """Return an event set when a notice names observation_id, or batch_id if given (register before
        reading its state)."""
        self.start()
        event = asyncio.Event()
        keys = [(self._waiting, observation_id)]
        if batch_id is not None:
            keys.append((self._waiting_batches, batch_id))
        for waiting, key in keys:
            waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for waiting, key in keys:
                events = waiting.get(key, set())
                events.discard(event)
                if not events:
                    waiting.pop(key, None)

    @property
    def waiting(self) -> int:
        """Return how many observations long-polls are waiting for in this process."""
        return len(self._waiting)

    def _notify(self, raw: bytes) -> None:
        try:
            notice = json.loads(raw)
        except ValueError:
            return
        if isinstance(notice, list):  # finished observations
            waiting, keys = self._waiting, notice
        elif isinstance(notice, dict) and isinstance(notice.get(BATCHES), list):  # batches' progress
            waiting, keys = self._waiting_batches, notice[BATCHES]
        else:
            return
        for key in keys:
            for event in waiting.get(key, ()) if isinstance(key, str) else ():
                event.set()

    async def _listen(self, url: str) -> None:
        while True:
            client = redis.asyncio.Redis.from_url(url)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        self._notify(message["data"])
            except (RedisError, OSError):
                log.warning("finished notices: subscription lost; long-polls answer at their deadline")
            finally:
                await client.aclose()
            await asyncio.sleep(RESUBSCRIBE_AFTER_S)
