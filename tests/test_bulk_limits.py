"""Big and bad uploads stay cheap: rejections listed a few at a time, limits checked before storing."""

from __future__ import annotations

import json
import threading
import time

import requests

from devstack.stack import ServiceStack
from tests.database import count_rows
from tests.factories import new_id, prediction_request

LISTED = 100  # BULK_REJECTIONS_LISTED, the default


def ndjson(items: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(item) for item in items)


def post_ndjson(stack: ServiceStack, body: str, query: str = "") -> requests.Response:
    return requests.post(
        stack.url(f"/batches{query}"), data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=60
    )


def test_an_answer_lists_the_first_rejections_and_links_to_all_of_them(stack: ServiceStack) -> None:
    bad = [prediction_request(hour=99) for _ in range(LISTED + 20)]
    good = [prediction_request() for _ in range(3)]
    receipt = post_ndjson(stack, ndjson([*good, *bad])).json()
    assert receipt["accepted"] == 3 and receipt["rejected_count"] == len(bad)
    assert [r["index"] for r in receipt["rejected"]] == list(range(3, 3 + LISTED))

    every = requests.get(stack.url(receipt["links"]["rejections"]), timeout=10)
    lines = [json.loads(line) for line in every.text.splitlines()]
    assert every.headers["Content-Type"] == "application/x-ndjson"
    assert [r["index"] for r in lines] == list(range(3, 3 + len(bad)))
    assert [r["id"] for r in lines] == [item["id"] for item in bad]
    assert all(
        r["errors"] == {"observation": {"hour": lines[0]["errors"]["observation"]["hour"]}} for r in lines
    )


def test_an_atomic_batch_says_how_many_are_bad_and_lists_the_first(stack: ServiceStack) -> None:
    bad = [prediction_request(hour=99) for _ in range(LISTED + 5)]
    response = post_ndjson(stack, ndjson(bad), "?atomic=true")
    error = response.json()["error"]
    assert response.status_code == 422
    assert error["fields"]["rejected_count"] == len(bad) and len(error["fields"]["rejected"]) == LISTED
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[item["id"] for item in bad]) == 0


def test_too_many_items_are_refused_before_anything_is_stored(stack: ServiceStack) -> None:
    items = [prediction_request() for _ in range(stack.bulk_max_items + 1)]
    started = time.monotonic()
    response = post_ndjson(stack, ndjson(items))
    assert response.status_code == 413
    assert time.monotonic() - started < 5  # counted, not stored and rolled back
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[items[0]["id"], items[-1]["id"]]) == 0


def test_a_json_batch_is_checked_whole_before_anything_is_stored(stack: ServiceStack) -> None:
    items = [prediction_request() for _ in range(10)]
    body = json.dumps({"observations": items})[:-1] + ', "observations": []}'  # a repeated top-level key
    response = requests.post(
        stack.url("/batches"), data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert (
        response.status_code == 400 and "repeated key 'observations'" in response.json()["error"]["message"]
    )
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[item["id"] for item in items]) == 0


def test_single_submissions_get_in_while_a_large_batch_is_stored(stack: ServiceStack) -> None:
    items = [prediction_request(id=new_id("large")) for _ in range(stack.bulk_max_items)]
    upload = threading.Thread(target=post_ndjson, args=(stack, ndjson(items)))
    upload_started = time.monotonic()
    upload.start()
    waits = []
    while upload.is_alive():
        started = time.monotonic()
        assert requests.post(stack.url("/predict"), json=prediction_request(), timeout=30).status_code == 202
        waits.append(time.monotonic() - started)
    upload.join()
    upload_s = time.monotonic() - upload_started
    # A single waits for one chunk's commit at most (SQLite writes one at a time), never for the whole upload:
    # under 1 s, or a quarter of the upload on a machine slow enough to take over 4 s for it (a single waited
    # 1.05 s once on SQLite on a machine at half its usual speed).
    assert waits and max(waits) < max(1.0, upload_s / 4), (max(waits), upload_s)
