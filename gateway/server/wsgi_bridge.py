"""Flask behind the front: a request whose body is already read runs in a thread pool, and its answer comes
back to the event loop whole in one hop if small (a2wsgi's bridge took a hop per receive and per send, half
the gateway's CPU per submission), or a chunk per hop, with backpressure, if large (a batch's results)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile
from typing import Any, BinaryIO

from a2wsgi.wsgi import build_environ

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SPOOL_IN_MEMORY_BYTES = 1 << 20
# An answer up to this size goes to the loop in one piece; past it, chunk by chunk.
WHOLE_RESPONSE_BYTES = 1 << 16


class BufferedBody:
    """A request body read in full before the app runs, or the fact that it passed its limit."""

    def __init__(self) -> None:
        # Closed by the front once the response is sent.
        self.file: BinaryIO = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # type: ignore[assignment]  # noqa: SIM115
        self.over_limit = False


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
