"""The gateway's HTTP server: uvicorn workers under gunicorn, each process an event loop.

Even a request uvicorn cannot parse (broken chunked framing, say) gets the JSON error envelope.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, answering unparseable requests with the JSON envelope, not plain text."""

    def send_400_response(self, msg: str) -> None:
        """Answer 400 in the error envelope and close the connection (as uvicorn does)."""
        body = json.dumps(
            {"error": {"code": "bad_request", "message": f"The request cannot be parsed: {msg}"}}
        ).encode()
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        self.transport.close()


class GatewayWorker(UvicornWorker):  # type: ignore[misc]
    """A gunicorn worker process running the ASGI gateway on uvloop with the envelope-speaking protocol."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": EnvelopeHttpToolsProtocol,
        "lifespan": "on",
        # Idle keep-alive connections are closed after this long; they cost no thread meanwhile.
        "timeout_keep_alive": 15,
    }
