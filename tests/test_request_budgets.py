"""Whatever an upload's shape, a gateway process spends a bounded amount of memory on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import requests

from devstack.stack import ServiceStack
from tests.factories import prediction_request

# What one request may add to a gateway process at its peak, over its size at rest (README: Hardening).
PEAK_BUDGET_BYTES = 100 * 1024 * 1024
MAX_LINE_BYTES = 65_536  # the stack's MAX_BODY_BYTES, the longest NDJSON or CSV line read
CSV_HEADER = (
    "id,InterventionReasonCode,SubjectRaceCode,SubjectSexCode,SubjectEthnicityCode,StatuteReason,"
    "ResidentIndicator,SearchAuthorizationCode,SubjectAge,hour,day_of_week\n"
)


class PeakGrowth:
    """The most any gateway process grew, at its peak, over its size before the block."""

    bytes = 0


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kilobytes) * 1024


@contextmanager
def gateway_peak_growth(stack: ServiceStack) -> Iterator[PeakGrowth]:
    """Measure, from the kernel's high-water mark of each gateway process, what the block cost at its peak."""
    processes = psutil.Process(stack.processes["gateway"].pid).children()
    assert processes, "the gateway runs no worker process"
    at_rest = {process.pid: process.memory_info().rss for process in processes}
    for process in processes:
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # the high-water mark starts again from now
    growth = PeakGrowth()
    yield growth
    growth.bytes = max(_peak_rss(pid) - rss for pid, rss in at_rest.items())


def post_batch(stack: ServiceStack, body: bytes, content_type: str) -> requests.Response:
    headers = {"Content-Type": content_type}
    return requests.post(stack.url("/batches"), data=body, headers=headers, timeout=120)


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(nested_arrays(30_000), id="arrays at the top"),
        pytest.param(b'{"observations": ' + nested_arrays(30_000) + b"}", id="arrays as the items"),
        pytest.param(b'{"a": ' * 12_000 + b"1" + b"}" * 12_000, id="objects"),
        pytest.param(
            b'{"observations": [{"id": "x", "observation": {"hour": ' + nested_arrays(30_000) + b"}}]}",
            id="arrays as a value",
        ),
    ],
)
def test_a_deeply_nested_batch_is_a_400_that_costs_the_gateway_no_memory(
    stack: ServiceStack, body: bytes
) -> None:
    # Before, each parser event carried its path: 60 KB of brackets took 1.27 GB, 200 KB 21 GB.
    with gateway_peak_growth(stack) as growth:
        answer = post_batch(stack, body, "application/json")
    assert growth.bytes < PEAK_BUDGET_BYTES
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"
    assert "nests more than 8 levels" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(b'"' + b"a" * (64 << 20) + b'"', id="a string"),
        pytest.param(b'"' + b'\\"' * (32 << 20) + b'"', id="a string of escaped quotes"),
        pytest.param(b"1" + b"0" * (64 << 20), id="a number"),
    ],
)
def test_a_batch_document_holding_a_huge_token_is_refused_before_it_is_held(
    stack: ServiceStack, token: bytes
) -> None:
    # Before, the parser held the token whole and slowly: 30 MB took 5 s, 100 MB 52 s.
    body = b'{"observations": [{"id": ' + token + b', "observation": {}}]}'
    with gateway_peak_growth(stack) as growth:
        answer = post_batch(stack, body, "application/json")
    assert growth.bytes < PEAK_BUDGET_BYTES
    assert answer.status_code == 400
    assert "longer than 65536 bytes" in answer.json()["error"]["message"]


def test_an_overlong_ndjson_line_is_that_items_rejection_and_never_held(stack: ServiceStack) -> None:
    first, last = prediction_request(), prediction_request()
    overlong = b'{"id": "' + b"z" * (96 << 20) + b'"}'
    body = b"\n".join([json.dumps(first).encode(), overlong, json.dumps(last).encode()])
    with gateway_peak_growth(stack) as growth:
        answer = post_batch(stack, body, "application/x-ndjson")
    assert growth.bytes < PEAK_BUDGET_BYTES
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    assert (receipt["accepted"], receipt["rejected_count"]) == (2, 1)
    assert receipt["rejected"] == [
        {"index": 1, "id": None, "errors": {"_schema": [f"Longer than {MAX_LINE_BYTES} bytes."]}}
    ]


def test_an_overlong_csv_line_is_a_400_and_never_held(stack: ServiceStack) -> None:
    body = (CSV_HEADER + "x" * (96 << 20) + "\n").encode()
    with gateway_peak_growth(stack) as growth:
        answer = post_batch(stack, body, "text/csv")
    assert growth.bytes < PEAK_BUDGET_BYTES
    assert answer.status_code == 400
    assert f"a line is longer than {MAX_LINE_BYTES} characters" in answer.json()["error"]["message"]
