"""The gateway's protocol, a subclass of uvicorn's, in process: what it overrides still exists, and its own
answers are the envelope (the real server's: tests/test_request_heads.py)."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import tomllib
from typing import Any

import uvicorn
from packaging.requirements import Requirement
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from core.settings import PROJECT_ROOT
from gateway.server.protocol import EnvelopeHttpToolsProtocol, GatewayWorker, HeadLimits

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
# The protocol's own helpers; every other method it defines overrides one of uvicorn's.
OWN_HELPERS = {"_start_head_deadline", "_cancel_head_deadline", "_head_timed_out", "_refuse"}
LIMITS = HeadLimits(total_bytes=4096, line_bytes=1024, headers=10, timeout_s=0.2)


class FakeTransport(asyncio.Transport):
    """Collect what the protocol writes; closing is recorded, not done."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def failing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("secret internal detail")


async def connect(app: Any = failing_app) -> tuple[EnvelopeHttpToolsProtocol, FakeTransport]:
    config = Config(app=app, http=EnvelopeHttpToolsProtocol, ws="none", lifespan="off", log_config=None)
    protocol = EnvelopeHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop(), limits=LIMITS)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def parse(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_envelope(answer: bytes, status: int, code: str) -> dict[str, Any]:
    got, headers, body = parse(answer)
    assert got == status
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code and body["error"]["request_id"] == headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


def test_every_method_the_protocol_overrides_still_exists_in_uvicorn_with_the_same_parameters() -> None:
    overriding = {
        name for name, value in vars(EnvelopeHttpToolsProtocol).items() if inspect.isfunction(value)
    } - OWN_HELPERS
    for name in overriding:
        assert name in vars(HttpToolsProtocol), f"uvicorn's HttpToolsProtocol has no {name} any more"
        ours = inspect.signature(getattr(EnvelopeHttpToolsProtocol, name)).parameters
        theirs = inspect.signature(getattr(HttpToolsProtocol, name)).parameters
        assert list(theirs) == [p for p in ours if ours[p].kind != inspect.Parameter.KEYWORD_ONLY], name
    # The 500 of an app that fails before answering is replaced per request cycle.
    assert "self.send_500_response()" in inspect.getsource(RequestResponseCycle.run_asgi)
    assert GatewayWorker.CONFIG_KWARGS["http"] is EnvelopeHttpToolsProtocol


def test_the_installed_uvicorn_is_within_the_range_the_protocol_was_checked_against() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    [pin] = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "uvicorn"]
    assert pin.specifier.contains(uvicorn.__version__), (uvicorn.__version__, str(pin.specifier))
    major, minor = uvicorn.__version__.split(".")[:2]
    assert not pin.specifier.contains(f"{major}.{int(minor) + 1}.0"), "pin to the minor release checked"


def test_an_app_failing_before_it_answers_is_a_500_envelope_without_details() -> None:
    async def run() -> bytes:
        protocol, transport = await connect()
        protocol.data_received(b"GET /boom HTTP/1.1\r\nHost: test\r\n\r\n")
        for _ in range(100):
            if transport.closed:
                break
            await asyncio.sleep(0.01)
        return transport.written

    answer = asyncio.run(run())
    assert assert_envelope(answer, 500, "internal_error")["message"] == "Internal error; it has been logged."
    assert b"secret" not in answer


async def answering_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_a_request_leaves_no_reference_cycle_for_the_collector() -> None:
    # The envelope's 500 is set on each request cycle; a closure holding that cycle made every request a
    # reference cycle (with its scope, transport and events) that only a full collection freed.
    async def run() -> Any:
        protocol, _ = await connect(answering_app)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        await asyncio.sleep(0.05)
        return protocol.cycle

    cycle = asyncio.run(run())
    assert cycle.response_complete
    held = [cell.cell_contents for cell in cycle.send_500_response.__closure__ or ()]
    assert not any(value is cycle or getattr(value, "__self__", None) is cycle for value in held)


def test_more_headers_than_the_limit_is_431_before_the_app_runs() -> None:
    async def run() -> FakeTransport:
        protocol, transport = await connect()
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(11))
        protocol.data_received(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        return transport

    transport = asyncio.run(run())
    assert transport.closed
    error = assert_envelope(transport.written, 431, "request_header_fields_too_large")
    assert "more than 10 header fields" in error["message"]


def test_a_head_is_fed_to_the_parser_no_further_than_its_limit() -> None:
    fed: list[int] = []

    async def run() -> FakeTransport:
        protocol, transport = await connect()
        feed = protocol.parser.feed_data

        def counted(data: bytes) -> None:
            fed.append(len(data))
            feed(data)

        # counts what reaches httptools, then parses it
        protocol.parser = type("Parser", (), {"feed_data": staticmethod(counted)})()
        protocol.data_received(b"GET / HTTP/1.1\r\nX-A: " + b"a" * 100_000)
        return transport

    transport = asyncio.run(run())
    assert sum(fed) == LIMITS.total_bytes
    assert_envelope(transport.written, 431, "request_header_fields_too_large")


def test_a_head_begun_but_unfinished_by_its_deadline_is_408_and_an_idle_connection_just_closes() -> None:
    async def run(first_bytes: bytes) -> FakeTransport:
        protocol, transport = await connect()
        if first_bytes:
            protocol.data_received(first_bytes)
        await asyncio.sleep(LIMITS.timeout_s + 0.2)
        return transport

    begun = asyncio.run(run(b"GET / HTTP/1.1\r\nHo"))
    assert begun.closed
    assert_envelope(begun.written, 408, "request_timeout")
    idle = asyncio.run(run(b""))
    assert idle.closed and idle.written == b""
