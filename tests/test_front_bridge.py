"""The front's bridge to Flask: the buffered body as input; small answers whole, large ones streamed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from gateway.server.wsgi_bridge import WHOLE_RESPONSE_BYTES, BufferedBody, BufferedWsgi

Message = dict[str, Any]


def scope(method: str = "POST", path: str = "/echo") -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }


def echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    start_response("202 ACCEPTED", [("Content-Type", "application/json")])
    return [body]


def large(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/x-ndjson")])
    return (b"x" * 10_000 + b"\n" for _ in range(20))


def serve(app: Any, request_scope: dict[str, Any], body: bytes = b"") -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        buffered = BufferedBody()
        buffered.file.write(body)
        try:
            await BufferedWsgi(app, threads=2)(request_scope, buffered, send)
        finally:
            buffered.file.close()

    asyncio.run(run())
    return sent


def test_a_small_answer_reaches_the_loop_whole_with_the_body_read_from_the_buffer() -> None:
    sent = serve(echo, scope(), b'{"id": "a"}')
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 202
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[1] == {"type": "http.response.body", "body": b'{"id": "a"}', "more_body": False}


def test_a_large_answer_is_streamed_in_order_and_complete() -> None:
    sent = serve(large, scope("GET", "/batches/b/results"))
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert len(bodies) > 2  # not held whole: sent as it came, past the first WHOLE_RESPONSE_BYTES
    assert all(m["more_body"] for m in bodies[:-1]) and not bodies[-1]["more_body"]
    assert b"".join(m["body"] for m in bodies) == (b"x" * 10_000 + b"\n") * 20
    assert len(bodies[0]["body"]) > WHOLE_RESPONSE_BYTES
