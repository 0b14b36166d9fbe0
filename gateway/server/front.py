"""The gateway's ASGI front: connections and waiting live on an event loop, Flask runs in a thread pool.

- An idle or slow client (headers or body sent a byte a second) costs a coroutine, not a thread: the body is
  read here, within its size limit (past it, reading stops and Flask answers 413 at once), spooled to disk
  past 1 MiB, and only then does Flask see the request, so no database work starts before the body is in.
- A long-poll on a queued result waits here for the workers' notice (or its deadline), not in a thread.
- Flask gets the buffered body as its input, in a thread pool (`wsgi_bridge.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from core.settings import Settings
from gateway.metrics import LONG_POLLS_HELD
from gateway.server.finished_listener import FinishedListener
from gateway.server.header_checks import HEADERS_CHECKED, HEADERS_ONLY, PROCEED_HEADER, needs_header_check
from gateway.server.long_polls import (
    BODY_FILE,
    BODY_OVER_LIMIT,
    HANDED_ON_AT,
    HOLD_BATCH_HEADER,
    HOLD_HEADER,
    THROUGH_FRONT,
)
from gateway.server.wsgi_bridge import BufferedBody, BufferedWsgi, Message, Receive, Scope, Send

RESULT_PREFIX = "/predictions/"
HOLD = HOLD_HEADER.lower().encode()
HOLD_BATCH = HOLD_BATCH_HEADER.lower().encode()
# What the route tells the front alone, and what the front decides itself.
FRONT_ONLY = {HOLD, HOLD_BATCH, b"connection"}
PROCEED = PROCEED_HEADER.lower().encode()


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


def _long_poll_id(scope: Scope) -> str | None:
    """Return the observation id of GET /predictions/<id>?wait=..., else None."""
    if scope["method"] != "GET" or not scope["path"].startswith(RESULT_PREFIX):
        return None
    if b"wait=" not in scope["query_string"]:
        return None
    return scope["path"][len(RESULT_PREFIX) :] or None  # ASGI paths arrive percent-decoded, as Flask's


class Captured:
    """The messages of one response, held back until the front decides what to send."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def _header(self, name: bytes) -> bytes | None:
        start = self.messages[0] if self.messages else {}
        return next((value for key, value in start.get("headers", []) if key == name), None)

    def hold_seconds(self) -> float | None:
        """Return how long the route asked the front to hold the request, if it did."""
        held = self._header(HOLD)
        return float(held) if held is not None else None

    def hold_batch(self) -> str | None:
        """Return the batch whose notices may finish the held request, if the route named one."""
        batch = self._header(HOLD_BATCH)
        return batch.decode("latin1") if batch is not None else None

    def proceeds(self) -> bool:
        """Say whether the app, asked with the headers alone, let the request go on to its body."""
        return self._header(PROCEED) is not None

    async def send_to(self, send: Send, *, close: bool = False) -> None:
        """Send the response on, without the front's own header; with close, end the connection after it."""
        for message in self.messages:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k not in FRONT_ONLY]
                if close:
                    headers.append((b"connection", b"close"))  # what the client still sends is not read
                message = {**message, "headers": headers}
            await send(message)


class GatewayFront:
    """Wrap the Flask app: read bodies within limits, hold long-polls, run Flask in a thread pool."""

    def __init__(self, wsgi_app: Any, settings: Settings, listener: FinishedListener) -> None:
        self._flask = BufferedWsgi(wsgi_app, threads=settings.gateway_threads)
        self._settings = settings
        self._listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if needs_header_check(scope["method"], scope["headers"]):
            if not await self._passes_header_check(scope, send):
                return
            scope = {**scope, HEADERS_CHECKED: True}
        body = await self._read_body(scope, receive)
        try:
            marks = {
                THROUGH_FRONT: True,
                BODY_OVER_LIMIT: body.over_limit,
                BODY_FILE: body.file,
                HANDED_ON_AT: time.perf_counter(),
            }
            await self._answer({**scope, **marks}, body, send)
        finally:
            body.file.close()

    async def _passes_header_check(self, scope: Scope, send: Send) -> bool:
        """Ask the app about the headers alone; send its refusal, if it refuses, without reading the body."""
        marks = {THROUGH_FRONT: True, HEADERS_ONLY: True, HANDED_ON_AT: time.perf_counter()}
        answer = Captured()
        nothing = BufferedBody()
        try:
            await self._flask({**scope, **marks}, nothing, answer)
        finally:
            nothing.file.close()
        if answer.proceeds():
            return True
        await answer.send_to(send, close=True)
        return False

    async def _answer(self, scope: Scope, body: BufferedBody, send: Send) -> None:
        observation_id = _long_poll_id(scope)
        if observation_id is None:
            await self._flask(scope, body, send)
            return
        with self._listener.expect(observation_id) as finished:
            first = Captured()
            await self._flask(scope, body, first)
            hold = first.hold_seconds()
            if hold is None:
                await first.send_to(send)
                return
            batch_id = first.hold_batch()
            with LONG_POLLS_HELD.track_inprogress(), contextlib.suppress(TimeoutError):
                if batch_id is None:
                    await asyncio.wait_for(finished.wait(), timeout=hold)
                elif await self._hold_for_batch_row(scope, body, send, observation_id, batch_id, hold):
                    return
        # Asked again, not held this time: the route answers with the state it finds now.
        await self._flask({**scope, THROUGH_FRONT: False, HANDED_ON_AT: time.perf_counter()}, body, send)

    async def _hold_for_batch_row(
        self, scope: Scope, body: BufferedBody, send: Send, observation_id: str, batch_id: str, hold: float
    ) -> bool:
        """Hold a long-poll on a row of an upload: ask again on each of its batch's notices (one covers many
        rows) until the row is no longer queued, and send that answer (True); False at the deadline."""
        deadline = time.monotonic() + hold
        with self._listener.expect(observation_id, batch_id) as progress:
            while True:
                progress.clear()  # before reading: a notice that comes after the read is kept
                again = Captured()
                await self._flask({**scope, HANDED_ON_AT: time.perf_counter()}, body, again)
                if again.hold_seconds() is None:
                    await again.send_to(send)
                    return True
                await asyncio.wait_for(progress.wait(), timeout=max(deadline - time.monotonic(), 0))

    def _limit(self, scope: Scope) -> int:
        if scope["path"] == "/batches":
            return self._settings.bulk_max_body_bytes
        return self._settings.max_body_bytes

    async def _read_body(self, scope: Scope, receive: Receive) -> BufferedBody:
        body = BufferedBody()
        limit = self._limit(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            body.over_limit = True  # refused before a byte of it is read
            return body
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return body  # the client went away; Flask answers nobody
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                body.over_limit = True
                return body
            body.file.write(chunk)
            if not message.get("more_body"):
                return body

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._listener.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._listener.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
