"""The gateway's HTTP server: uvicorn workers under gunicorn, each process an event loop.

Before a request reaches the app, the protocol bounds what a client can make a process hold: the request's
head (request line and headers) in bytes, per line and in header count, and the time it takes to arrive. What
the protocol answers itself (a request it cannot parse or refuses, an app that fails before it answers) is the
JSON error envelope with the security headers and a request id, as every answer of the app is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState
from uvicorn_worker import UvicornWorker

from core.settings import Settings, get_settings
from gateway.app import REQUEST_ID_HEADER, new_request_id
from gateway.errors import envelope
from gateway.server.security_headers import HEADERS

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
SECURITY_HEADERS: Headers = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]


@dataclass(frozen=True)
class HeadLimits:
    """What one request's head may take: bytes in all, bytes of one line (or the URL), headers, seconds."""

    total_bytes: int
    line_bytes: int
    headers: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        return cls(
            total_bytes=settings.max_header_bytes,
            line_bytes=settings.max_header_line_bytes,
            headers=settings.max_headers,
            timeout_s=settings.header_timeout_s,
        )


class HeadRefused(Exception):
    """Raised in a parser callback to stop reading a head past its limits; the answer is status, message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_answer(status: int, message: str) -> tuple[Headers, bytes, str]:
    """Return the headers and body of an error answer that closes the connection, and its new request id."""
    request_id = new_request_id()
    body = json.dumps(envelope(status, message, request_id=request_id), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
        *SECURITY_HEADERS,
    ]
    return headers, body, request_id


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with bounded request heads; its own errors are the JSON envelope."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeadLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or HeadLimits.from_settings(get_settings())
        # A head is awaited from the connection's start and after each request's body, until its end.
        self._awaiting_head = True
        self._head_begun = False
        self._head_bytes = 0
        self._header_count = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        self._refused: HeadRefused | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The parser is fed no more of a head than its limit: past it, the head is refused unread, so a
        # process never holds (nor parses) a larger one.
        while data and not self.transport.is_closing():
            if not self._awaiting_head:
                # A pipelined head that starts within this piece is counted from the next piece on.
                super().data_received(data)
                return
            room = self.limits.total_bytes - self._head_bytes
            if room <= 0:
                self._refuse(
                    431, f"The request line and headers are larger than {self.limits.total_bytes} bytes."
                )
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused: past a limit of its head, else 400; close the connection."""
        if self._refused is not None:
            self._refuse(self._refused.status, self._refused.message)
        else:
            self._refuse(400, f"The request cannot be parsed: {msg}")

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.line_bytes:
            self._refused = HeadRefused(414, f"The URL is longer than {self.limits.line_bytes} bytes.")
            raise self._refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.headers:
            message = f"The request has more than {self.limits.headers} header fields."
            self._refused = HeadRefused(431, message)
            raise self._refused
        if len(name) + len(value) + 2 > self.limits.line_bytes:
            self._refused = HeadRefused(
                431, f"A header line is longer than {self.limits.line_bytes} bytes (name, ': ' and value)."
            )
            raise self._refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_begun = False
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # No request in hand (none running, none queued behind it): the next head has its deadline from now.
        if not self.transport.is_closing() and self._awaiting_head and self.cycle.response_complete:
            self._start_head_deadline()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Held weakly: stored on the cycle, a closure over it would make every request a reference cycle
        # (cycle, scope, transport, events) left for the collector, whose full passes stall the event loop.
        send = weakref.WeakMethod(cycle.send)

        async def send_500_response() -> None:
            deliver = send()
            if deliver is None:
                return
            headers, body, _ = error_answer(500, "Internal error; it has been logged.")
            await deliver({"type": "http.response.start", "status": 500, "headers": headers})
            await deliver({"type": "http.response.body", "body": body, "more_body": False})

        # uvicorn's own is plain text: when the app fails before it answers, the envelope instead.
        cycle.send_500_response = send_500_response  # type: ignore[method-assign]
        super()._start_asgi_task(cycle, app)

    # The head's deadline

    def _start_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self._head_begun or self._head_bytes:
            self._refuse(408, f"The request's headers did not arrive within {self.limits.timeout_s:g} s.")
        else:
            self.transport.close()  # idle: nothing to answer

    def _refuse(self, status: int, message: str) -> None:
        """Answer status in the error envelope and close the connection, whatever is left unread."""
        headers, body, request_id = error_answer(status, message)
        lines = [f"{name.decode()}: {value.decode()}\r\n".encode() for name, value in headers]
        defaults = [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        self.transport.write(b"".join([STATUS_LINE[status], *defaults, *lines, b"\r\n", body]))
        self.transport.close()
        self._awaiting_head = False
        self._cancel_head_deadline()
        log.warning(
            "request refused by the server",
            extra={"request_id": request_id, "status": status, "reason": message, "client": self.client},
        )


class GatewayWorker(UvicornWorker):  # type: ignore[misc]
    """A gunicorn worker process running the ASGI gateway on uvloop with the envelope-speaking protocol."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": EnvelopeHttpToolsProtocol,  # its head limits come from the settings (MAX_HEADER_BYTES, ...)
        # The gateway serves no WebSocket: an Upgrade header never hands the connection to another protocol.
        "ws": "none",
        "lifespan": "on",
        # Idle keep-alive connections are closed after this long (or HEADER_TIMEOUT_S, if shorter); they
        # cost no thread meanwhile.
        "timeout_keep_alive": 15,
    }
