"""The gateway's ASGI front: connections and waiting live on an event loop, Flask runs in a thread pool.

- An idle or slow client (headers or body sent a byte a second) costs a coroutine, not a thread: the body is
  read here, within its size limit (past it, reading stops and Flask answers 413 at once), spooled to disk
  past 1 MiB, and only then does Flask see the request, so no database work starts before the body is in.
- A long-poll on a queued result waits here for the workers' notice (or its deadline), not in a thread.
- Flask gets the buffered body as its input and hands back a small answer whole, in one hop from its thread to
  the loop (a2wsgi's bridge took a hop per receive and per send, half the gateway's CPU per submission); a
  large answer (a batch's results) is streamed a chunk per hop, with backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile
from typing import Any, BinaryIO

from a2wsgi.wsgi import build_environ

from core.settings import Settings
from gateway.metrics import LONG_POLLS_HELD
from gateway.server.finished_listener import FinishedListener
from gateway.server.header_checks import HEADERS_CHECKED, HEADERS_ONLY, PROCEED_HEADER, needs_header_check
from gateway.server.long_polls import BODY_FILE, BODY_OVER_LIMIT, HANDED_ON_AT, HOLD_HEADER, THROUGH_FRONT

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SPOOL_IN_MEMORY_BYTES = 1 << 20
# An answer up to this size goes to the loop in one piece; past it, chunk by chunk.
WHOLE_RESPONSE_BYTES = 1 << 16
RESULT_PREFIX = "/predictions/"
HOLD = HOLD_HEADER.lower().encode()
PROCEED = PROCEED_HEADER.lower().encode()


class BufferedBody:
    """A request body read in full before the app runs, or the fact that it passed its limit."""

    def __init__(self) -> None:
        # Closed by the front once the response is sent.
        self.file: BinaryIO = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # type: ignore[assignment]  # noqa: SIM115
        self.over_limit = False


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

    def proceeds(self) -> bool:
        """Say whether the app, asked with the headers alone, let the request go on to its body."""
        return self._header(PROCEED) is not None

    async def send_to(self, send: Send, *, close: bool = False) -> None:
        """Send the response on, without the front's own header; with close, end the connection after it."""
        for message in self.messages:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k != HOLD and k != b"connection"]
                if close:
                    headers.append((b"connection", b"close"))  # what the client still sends is not read
                message = {**message, "headers": headers}
            await send(message)


class WsgiCall:
    """One request through Flask in a worker thread: its answer whole if small, else streamed to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send) -> None:
        self._loop = loop
        self._send = send
        self._start: Message | None = None
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._streaming = False

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and self._streaming:
            raise exc_info[1].with_traceback(exc_info[2])  # too late to change the answer (PEP 3333)
        self._start = {
            "type": "http.response.start",
            "status": int(status.split(" ", 1)[0]),
            "headers": [(k.strip().encode("latin1").lower(), v.strip().encode("latin1")) for k, v in headers],
        }
        return self._write

    async def _deliver(self, message: Message) -> None:
        await self._send(message)

    def _send_from_thread(self, message: Message) -> None:
        asyncio.run_coroutine_threadsafe(self._deliver(message), self._loop).result()

    def _write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._streaming:
            self._send_from_thread({"type": "http.response.body", "body": chunk, "more_body": True})
            return
        self._held.append(chunk)
        self._held_bytes += len(chunk)
        if self._held_bytes > WHOLE_RESPONSE_BYTES and self._start is not None:
            self._streaming = True  # from here on the loop gets each chunk as it comes
            self._send_from_thread(self._start)
            self._send_from_thread(
                {"type": "http.response.body", "body": b"".join(self._held), "more_body": True}
            )
            self._held.clear()

    def run(self, app: Any, environ: dict[str, Any]) -> list[Message]:
        """Call the WSGI app; return what is left for the loop to send."""
        iterable = app(environ, self._start_response)
        try:
            for chunk in iterable:
                self._write(chunk)
        finally:
            getattr(iterable, "close", lambda: None)()
        if self._start is None:
            raise RuntimeError("the WSGI app returned without starting a response")
        last = {"type": "http.response.body", "body": b"".join(self._held), "more_body": False}
        return [last] if self._streaming else [self._start, last]


class BufferedWsgi:
    """Run a WSGI app on requests whose body is already read, in a pool of threads."""

    def __init__(self, app: Any, *, threads: int) -> None:
        self._app = app
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="WSGI")

    async def __call__(self, scope: Scope, body: BufferedBody, send: Send) -> None:
        body.file.seek(0)
        # The body file reads as a2wsgi's Body does: without a hop to the loop for each read.
        environ: dict[str, Any] = build_environ(scope, body.file)  # type: ignore[arg-type,assignment]
        environ["wsgi.input_terminated"] = True  # the body is whole: Flask reads a chunked one to its end
        loop = asyncio.get_running_loop()
        call = WsgiCall(loop, send)
        run = functools.partial(contextvars.copy_context().run, call.run, self._app, environ)
        for message in await loop.run_in_executor(self._executor, run):
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
            with LONG_POLLS_HELD.track_inprogress(), contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), timeout=hold)
        # Asked again, not held this time: the route answers with the state it finds now.
        await self._flask({**scope, THROUGH_FRONT: False, HANDED_ON_AT: time.perf_counter()}, body, send)

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
