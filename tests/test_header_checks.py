"""An upload nobody may send is refused from its headers: its body is never read, nor asked for."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from devstack.stack import ServiceStack
from tests.factories import new_id, prediction_request
from tests.test_api_keys import make_key

FOUR_HUNDRED_MIB = 400 << 20


@pytest.fixture(scope="module")
def secured_stack(stack: ServiceStack) -> Iterator[ServiceStack]:
    """The stack's gateway with keys required and 5 submissions a minute per key, then as before."""
    with stack.gateway_env(AUTH_REQUIRED="true", RATE_LIMIT_SUBMISSIONS="5/minute"):
        yield stack


def send_head(stack: ServiceStack, path: str, *headers: str) -> socket.socket:
    """Open a connection and send a POST's request line and headers, and nothing of its body."""
    connection = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", *headers, "", ""]
    connection.sendall("\r\n".join(lines).encode())
    return connection


def read_answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response (status, lower-cased headers, body); a timeout means the server waits for more."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed without an answer: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += connection.recv(65536)
    return int(status_line.split()[1]), headers, body[:length]


def key_header(key: str) -> str:
    return f"Authorization: Bearer {key}"


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param((f"Content-Length: {FOUR_HUNDRED_MIB}", "Expect: 100-continue"), id="expecting 100"),
        pytest.param((f"Content-Length: {FOUR_HUNDRED_MIB}",), id="with a length"),
        pytest.param(("Transfer-Encoding: chunked",), id="chunked"),
    ],
)
def test_an_upload_without_a_key_is_401_before_a_byte_of_its_body_is_sent(
    secured_stack: ServiceStack, framing: tuple[str, ...]
) -> None:
    # Before, the gateway said 100 Continue (or just read), and spooled 400 MiB to disk before its 401.
    with send_head(secured_stack, "/batches", "Content-Type: text/csv", *framing) as connection:
        status, headers, body = read_answer(connection)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert headers["www-authenticate"].startswith("Bearer")
    assert headers["connection"] == "close"  # what the client may still send is never read
    assert headers["x-request-id"] and headers["x-content-type-options"] == "nosniff"


def test_an_upload_with_a_key_lacking_the_scope_is_403_before_its_body_is_sent(
    secured_stack: ServiceStack,
) -> None:
    reader = make_key(secured_stack.engine, "read")
    framing = (f"Content-Length: {FOUR_HUNDRED_MIB}", "Expect: 100-continue")
    with send_head(secured_stack, "/batches", key_header(reader), *framing) as connection:
        status, _, body = read_answer(connection)
    assert status == 403
    assert "needs the 'submit' scope" in json.loads(body)["error"]["message"]


def test_an_upload_to_an_unknown_path_is_404_before_its_body_is_sent(secured_stack: ServiceStack) -> None:
    with send_head(secured_stack, "/batchez", "Transfer-Encoding: chunked") as connection:
        status, _, body = read_answer(connection)
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


def test_a_key_that_may_submit_is_told_to_continue_and_its_upload_is_accepted(
    secured_stack: ServiceStack,
) -> None:
    submitter = make_key(secured_stack.engine, "submit")
    body = json.dumps(prediction_request(id=new_id("continued"))).encode()
    framing = (f"Content-Length: {len(body)}", "Expect: 100-continue", "Content-Type: application/json")
    with send_head(secured_stack, "/predict", key_header(submitter), *framing) as connection:
        assert connection.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        status, _, answer = read_answer(connection)
    assert status == 202, answer


def test_a_chunked_submission_is_read_whole_and_accepted(secured_stack: ServiceStack) -> None:
    # Before, Flask saw an empty body behind the front whenever the client sent it in chunks.
    submitter = make_key(secured_stack.engine, "submit")
    body = json.dumps(prediction_request(id=new_id("chunked"))).encode()
    framing = ("Transfer-Encoding: chunked", "Content-Type: application/json")
    with send_head(secured_stack, "/predict", key_header(submitter), *framing) as connection:
        half = len(body) // 2
        for piece in (body[:half], body[half:], b""):
            connection.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        status, _, answer = read_answer(connection)
    assert status == 202, answer


def test_a_checked_upload_counts_once_against_its_keys_rate_limit(secured_stack: ServiceStack) -> None:
    # 5 a minute: if the check and the upload were both counted, the third upload would be refused.
    submitter = make_key(secured_stack.engine, "submit")
    statuses = []
    for _ in range(6):
        framing = ("Transfer-Encoding: chunked", "Content-Type: application/json")
        with send_head(secured_stack, "/predict", key_header(submitter), *framing) as connection:
            connection.sendall(b"2\r\n{}\r\n0\r\n\r\n")
            statuses.append(read_answer(connection)[0])
    assert statuses == [422] * 5 + [429]
