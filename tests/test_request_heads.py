"""A request's head is bounded in size and time by the real gateway, and what the server answers itself (431,
414, 408, its 400s) is the JSON envelope with the security headers and a request id."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import ServiceStack
from tests.test_slow_clients import answer_seconds

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
HEAD_TIMEOUT_S = 1.0


def read_until_closed(connection: socket.socket) -> bytes:
    """Read what the server sends until it closes the connection (a reset after its answer counts)."""
    answer = b""
    try:
        while chunk := connection.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass  # it closed with our request unread: its answer came before the reset
    return answer


def exchange(stack: ServiceStack, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before it was all sent
            connection.sendall(request)
        return read_until_closed(connection)


def assert_server_envelope(answer: bytes, status: int, code: str) -> dict[str, Any]:
    """Check an answer that closes the connection: status, envelope, security headers and request id."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin1").split("\r\n")
    assert status_line.startswith(f"HTTP/1.1 {status} "), answer[:300]
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    envelope = json.loads(body)
    assert set(envelope) == {"error"}
    error: dict[str, Any] = envelope["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == code and error["message"]
    assert error["request_id"] == headers["x-request-id"]
    return error


def test_a_header_larger_than_the_limit_is_431_in_the_envelope_and_the_connection_closes(
    stack: ServiceStack,
) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    error = assert_server_envelope(exchange(stack, request), 431, "request_header_fields_too_large")
    assert "65536 bytes" in error["message"]  # MAX_HEADER_BYTES' default


def test_a_header_line_longer_than_its_limit_is_431(stack: ServiceStack) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: test\r\nCookie: " + b"a" * 9_000 + b"\r\n\r\n"
    error = assert_server_envelope(exchange(stack, request), 431, "request_header_fields_too_large")
    assert "header line" in error["message"]


def test_more_header_fields_than_the_limit_is_431(stack: ServiceStack) -> None:
    headers = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(101))
    request = b"GET /health HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n"
    error = assert_server_envelope(exchange(stack, request), 431, "request_header_fields_too_large")
    assert "more than 100 header fields" in error["message"]


@pytest.mark.parametrize("length", [9_000, 70_000])
def test_a_url_longer_than_the_limit_is_414_in_the_envelope(stack: ServiceStack, length: int) -> None:
    request = b"GET /predictions/" + b"a" * length + b" HTTP/1.1\r\nHost: test\r\n\r\n"
    assert_server_envelope(exchange(stack, request), 414, "uri_too_long")


def test_heads_within_the_limits_are_served(stack: ServiceStack) -> None:
    headers = b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * 500) for i in range(90))
    request = b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + headers + b"\r\n"
    assert exchange(stack, request).startswith(b"HTTP/1.1 200 ")


def test_a_client_sending_a_header_of_many_megabytes_is_refused_at_once_and_blocks_no_one(
    stack: ServiceStack,
) -> None:
    sent: dict[int, int] = {}

    def send_huge_header(client: int, connection: socket.socket) -> None:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Huge: ")
        sent[client] = 0
        try:
            while sent[client] < 64 << 20:
                connection.sendall(b"h" * (1 << 20))
                sent[client] += 1 << 20
        except OSError:
            pass  # refused (reset), or closed by the test when it failed

    # Two at once: with two gateway processes, likely one each.
    connections = [socket.create_connection(("127.0.0.1", stack.port), timeout=30) for _ in range(2)]
    try:
        senders = [
            threading.Thread(target=send_huge_header, args=(i, c), daemon=True)
            for i, c in enumerate(connections)
        ]
        for sender in senders:
            sender.start()
        time.sleep(0.2)
        for _ in range(3):
            assert answer_seconds(stack) < 1
        for connection in connections:
            assert_server_envelope(read_until_closed(connection), 431, "request_header_fields_too_large")
        for sender in senders:
            sender.join(timeout=30)
        assert all(count < 64 << 20 for count in sent.values())  # refused long before its end
    finally:
        for connection in connections:
            connection.close()


# What the server answers before the app runs: once the parser has given up on the request.
UNPARSEABLE = {
    "broken chunked framing": (
        b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    ),
    "content-length with transfer-encoding": (
        b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    ),
    "negative content-length": b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "nul in a header": b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "header line without a colon": b"GET /health HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
    "unparseable request line": b"GET\x01 / HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_the_servers_own_400s_carry_security_headers_and_a_request_id(
    stack: ServiceStack, request_bytes: bytes
) -> None:
    error = assert_server_envelope(exchange(stack, request_bytes), 400, "bad_request")
    assert error["message"].startswith("The request cannot be parsed")


@pytest.fixture(scope="module")
def short_head_timeout(stack: ServiceStack) -> Iterator[None]:
    """Run the gateway with a head timeout of HEAD_TIMEOUT_S for this module's timeout tests."""
    with stack.gateway_env(HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S)):
        yield


def served_once(stack: ServiceStack) -> socket.socket:
    """Open a keep-alive connection and have one request answered on it."""
    connection = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    connection.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < length(answer):
        chunk = connection.recv(65536)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    return connection


def length(answer: bytes) -> int:
    """Return the Content-Length of an answer whose head has arrived."""
    [value] = re.findall(rb"(?im)^content-length: *(\d+)\r$", answer.partition(b"\r\n\r\n")[0])
    return int(value)


@pytest.mark.parametrize("after_a_response", [False, True], ids=["new connection", "after a response"])
def test_a_connection_that_never_finishes_its_headers_is_closed_with_408(
    stack: ServiceStack, short_head_timeout: None, after_a_response: bool
) -> None:
    connection = (
        served_once(stack) if after_a_response else socket.create_connection(("127.0.0.1", stack.port))
    )
    with connection:
        connection.settimeout(0.2)
        started = time.monotonic()
        connection.sendall(b"GET /health HTTP/1.1\r\nHo")
        answer = b""
        while time.monotonic() - started < 10:
            try:
                connection.sendall(b"s")  # one byte at a time, never the end of the headers
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        closed_after = time.monotonic() - started
    assert HEAD_TIMEOUT_S - 0.1 < closed_after < HEAD_TIMEOUT_S + 2
    assert_server_envelope(answer, 408, "request_timeout")


@pytest.mark.parametrize("after_a_response", [False, True], ids=["new connection", "after a response"])
def test_an_idle_connection_is_closed_without_an_answer(
    stack: ServiceStack, short_head_timeout: None, after_a_response: bool
) -> None:
    connection = (
        served_once(stack) if after_a_response else socket.create_connection(("127.0.0.1", stack.port))
    )
    with connection:
        connection.settimeout(10)
        started = time.monotonic()
        assert connection.recv(65536) == b""
        assert HEAD_TIMEOUT_S - 0.1 < time.monotonic() - started < HEAD_TIMEOUT_S + 2
