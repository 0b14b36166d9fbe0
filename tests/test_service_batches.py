"""Upstream systems submitting in bulk: formats, partial acceptance, atomic mode, results.

Over real HTTP on every backend, but for the uploads refused while they are read and counted (before anything
is stored) and the query arguments refused before anything is read: those run once, in process.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from core.storage.tables import batches
from devstack.stack import ServiceStack, wait_until
from gateway.context import EXTENSION
from tests.database import count_rows
from tests.factories import COURSE_OBSERVATION, new_id, prediction_request
from tests.service_steps import poll_until_finished

FEATURES = list(COURSE_OBSERVATION)


def csv_body(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *FEATURES])
    for row in rows:
        cells = [row["observation"][name] for name in FEATURES]
        writer.writerow([row["id"], *[str(c).lower() if isinstance(c, bool) else c for c in cells]])
    return out.getvalue()


def wait_for_batch(stack: ServiceStack, batch_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = requests.get(stack.url(f"/batches/{batch_id}"), timeout=5).json()
        return body if body["status"] == "done" else None

    return wait_until(done, timeout=timeout, interval=0.1)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The gateway in process, with the limits of the test stack (devstack.stack)."""
    return make_app(max_body_bytes=65_536, max_wait_s=5, bulk_max_items=ServiceStack.bulk_max_items)


def stored(stack: ServiceStack, ids: list[str]) -> int:
    with stack.engine.connect() as conn:
        return count_rows(conn=conn, observation_ids=ids)


MIXED = [
    prediction_request(),
    prediction_request(hour=24),
    prediction_request(),
    prediction_request(StatuteReason="Stop sign", SubjectAge="twenty"),
    prediction_request(),
]


@pytest.mark.parametrize("kind", ["json", "ndjson", "csv"])
def test_batch_accepts_valid_items_and_reports_each_rejected_one(stack: ServiceStack, kind: str) -> None:
    items = [prediction_request(id=new_id(kind), **item["observation"]) for item in MIXED]
    if kind == "json":
        response = requests.post(stack.url("/batches"), json={"observations": items}, timeout=30)
    elif kind == "ndjson":
        body = "\n".join(json.dumps(item) for item in items) + "\n"
        response = requests.post(
            stack.url("/batches"), data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=30
        )
    else:
        response = requests.post(
            stack.url("/batches"), data=csv_body(items), headers={"Content-Type": "text/csv"}, timeout=30
        )
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["items"] == 5 and receipt["accepted"] == 3
    assert [(r["index"], r["id"]) for r in receipt["rejected"]] == [(1, items[1]["id"]), (3, items[3]["id"])]
    assert receipt["rejected"][0]["errors"] == {
        "observation": {"hour": ["Must be greater than or equal to 0 and less than or equal to 23."]}
    }
    assert set(receipt["rejected"][1]["errors"]["observation"]) == {"StatuteReason", "SubjectAge"}
    assert stored(stack, [i["id"] for i in items]) == 3

    progress = wait_for_batch(stack, receipt["batch_id"])
    assert progress["counts"] == {"queued": 0, "done": 3, "failed": 0}
    assert progress["progress"] == 1.0 and progress["finished_at"] >= progress["started_at"]


def test_atomic_batch_with_a_bad_item_stores_nothing_and_lists_every_bad_item(stack: ServiceStack) -> None:
    items = [prediction_request(id=new_id("atomic"), **item["observation"]) for item in MIXED]
    response = requests.post(stack.url("/batches?atomic=true"), json={"observations": items}, timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]
    assert [r["index"] for r in error["fields"]["rejected"]] == [1, 3]
    assert stored(stack, [i["id"] for i in items]) == 0


def test_atomic_batch_of_valid_items_is_accepted_whole(stack: ServiceStack) -> None:
    items = [prediction_request() for _ in range(4)]
    response = requests.post(stack.url("/batches?atomic=true"), json={"observations": items}, timeout=30)
    assert response.status_code == 202 and response.json()["accepted"] == 4
    wait_for_batch(stack, response.json()["batch_id"])


def test_duplicate_ids_inside_a_batch_and_across_batches_follow_the_single_request_rules(
    stack: ServiceStack,
) -> None:
    first = prediction_request()
    earlier = requests.post(stack.url("/batches"), json={"observations": [first]}, timeout=30).json()
    wait_for_batch(stack, earlier["batch_id"])
    inside = prediction_request()
    items = [
        inside,
        dict(inside),  # same id, same observation: a replay
        prediction_request(id=inside["id"], hour=1),  # same id, other observation: a conflict
        dict(first),  # replay of an earlier batch's item
        prediction_request(id=first["id"], hour=2),  # conflict with it
    ]
    receipt = requests.post(stack.url("/batches"), json={"observations": items}, timeout=30).json()
    assert receipt["accepted"] == 3
    assert [(r["index"], r["errors"]) for r in receipt["rejected"]] == [
        (2, {"id": ["Already submitted with a different observation."]}),
        (4, {"id": ["Already submitted with a different observation."]}),
    ]
    assert stored(stack, [inside["id"], first["id"]]) == 2
    wait_for_batch(stack, receipt["batch_id"])
    results = requests.get(stack.url(f"/batches/{receipt['batch_id']}/results"), timeout=30).text.splitlines()
    assert [json.loads(line)["index"] for line in results] == [0, 1, 3]


def test_batch_larger_than_one_chunk_is_predicted_and_downloaded_in_order(stack: ServiceStack) -> None:
    # The stack reads 2,000 rows per chunk and puts 500 observations in a message.
    items = [prediction_request(id=f"big-{new_id()}-{n:05d}", hour=n % 24) for n in range(4_500)]
    body = "\n".join(json.dumps(item) for item in items)
    response = requests.post(
        stack.url("/batches"), data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=60
    )
    receipt = response.json()
    assert receipt["accepted"] == 4_500 and receipt["rejected"] == []
    wait_for_batch(stack, receipt["batch_id"], timeout=120)

    results_url = stack.url(f"/batches/{receipt['batch_id']}/results")
    lines = requests.get(results_url, params={"format": "ndjson"}, timeout=60).text.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == [i["id"] for i in items]
    assert all(r["status"] == "done" and 0 <= r["proba"] <= 1 for r in rows)
    # One version accepted the whole batch (no rollout stored: the settings' one), and it predicted each row.
    assert {(r["accepted_version"], r["model_version"]) for r in rows} == {(rows[0]["model_version"],) * 2}

    table = list(
        csv.DictReader(
            io.StringIO(requests.get(results_url, headers={"Accept": "text/csv"}, timeout=60).text)
        )
    )
    assert [r["id"] for r in table] == [i["id"] for i in items]
    assert table[0]["index"] == "0" and table[0]["status"] == "done"


def test_batch_over_the_item_limit_is_413_and_stores_nothing(stack: ServiceStack) -> None:
    items = [prediction_request(id=new_id("limit")) for _ in range(stack.bulk_max_items + 1)]
    response = requests.post(stack.url("/batches"), json={"observations": items}, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert stored(stack, [i["id"] for i in items]) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ('{"observations": {}}', "application/json", 422),
        ("[]", "application/json", 422),
        ("{", "application/json", 400),
        ("id,hour\nx,1\n", "text/csv", 422),
        ("anything", "text/plain", 415),
        ("id,notes," + ",".join(FEATURES) + "\n", "text/csv", 422),
    ],
)
def test_malformed_batches_are_clear_errors(
    client: FlaskClient, body: str, content_type: str, status: int
) -> None:
    response = client.post("/batches", data=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}


def test_unknown_batch_is_404(stack: ServiceStack) -> None:
    assert requests.get(stack.url("/batches/nope"), timeout=5).status_code == 404
    assert requests.get(stack.url("/batches/nope/results"), timeout=5).status_code == 404


def test_long_poll_returns_as_soon_as_the_result_is_done(stack: ServiceStack) -> None:
    body = prediction_request()
    requests.post(stack.url("/predict"), json=body, timeout=5)
    started = time.monotonic()
    result = requests.get(stack.url(f"/predictions/{body['id']}"), params={"wait": 20}, timeout=30).json()
    assert result["status"] == "done"
    assert time.monotonic() - started < 10


def test_long_poll_times_out_with_the_queued_state(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    body = prediction_request()
    requests.post(stack.url("/predict"), json=body, timeout=5)
    started = time.monotonic()
    response = requests.get(stack.url(f"/predictions/{body['id']}"), params={"wait": 1.5}, timeout=30)
    assert 1.4 <= time.monotonic() - started < 5
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert response.headers["Retry-After"]
    stack.start("worker")
    assert poll_until_finished(stack, body["id"])["status"] == "done"


@pytest.mark.parametrize("wait", ["-1", "abc", "nan", "inf"])
def test_bad_wait_is_422(client: FlaskClient, wait: str) -> None:
    response = client.get(f"/predictions/{new_id()}", query_string={"wait": wait})
    assert response.status_code == 422
    assert "wait" in response.get_json()["error"]["fields"]


def test_long_poll_is_capped_at_max_wait(stopped_worker: ServiceStack) -> None:
    stack = stopped_worker
    body = prediction_request()
    requests.post(stack.url("/predict"), json=body, timeout=5)
    started = time.monotonic()
    response = requests.get(stack.url(f"/predictions/{body['id']}"), params={"wait": 100}, timeout=30)
    assert 4.5 <= time.monotonic() - started < 10  # MAX_WAIT_S is 5 in the test stack
    assert response.json()["status"] == "queued"


def test_csv_from_a_spreadsheet_with_a_byte_order_mark_is_read(stack: ServiceStack) -> None:
    item = prediction_request()
    body = "\ufeff" + csv_body([item])
    response = requests.post(
        stack.url("/batches"), data=body.encode(), headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert response.status_code == 202 and response.json()["accepted"] == 1
    wait_for_batch(stack, response.json()["batch_id"])
    results = requests.get(
        stack.url(f"/batches/{response.json()['batch_id']}/results?format=csv"), timeout=10
    )
    row = next(csv.DictReader(io.StringIO(results.text)))
    assert row["prediction"] in ("true", "false")


def test_unknown_atomic_value_is_422(client: FlaskClient) -> None:
    response = client.post("/batches?atomic=maybe", json={"observations": []})
    assert response.status_code == 422 and "atomic" in response.get_json()["error"]["fields"]


def post_csv(stack: ServiceStack, body: str | bytes) -> requests.Response:
    return requests.post(stack.url("/batches"), data=body, headers={"Content-Type": "text/csv"}, timeout=10)


def post_csv_in_process(client: FlaskClient, body: str | bytes) -> TestResponse:
    return client.post("/batches", data=body, headers={"Content-Type": "text/csv"})


def batches_stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one())


def engine_of(app: Flask) -> Engine:
    engine: Engine = app.extensions[EXTENSION].engine
    return engine


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"observations": []}', "application/json"),
        ("", "application/x-ndjson"),
        ("\n\n", "application/x-ndjson"),
        ("id," + ",".join(FEATURES) + "\n", "text/csv"),
    ],
)
def test_batch_without_items_is_422_and_stores_nothing(
    app: Flask, client: FlaskClient, body: str, content_type: str
) -> None:
    before = batches_stored(engine_of(app))
    response = client.post("/batches", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert response.get_json()["error"]["message"] == "The batch holds no items."
    assert batches_stored(engine_of(app)) == before


def test_csv_with_a_repeated_column_is_422(client: FlaskClient) -> None:
    body = "id,id," + ",".join(FEATURES) + "\n"
    response = post_csv_in_process(client, body)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"id": ["Repeated column."]}


def test_csv_that_is_not_utf8_is_400_saying_so(app: Flask, client: FlaskClient) -> None:
    body = csv_body([prediction_request(), prediction_request()]).encode()
    body = body.replace(b"\n", b"\n\xff", 2)  # a byte that is not UTF-8 at the start of a data row
    before = batches_stored(engine_of(app))
    response = post_csv_in_process(client, body)
    assert response.status_code == 400
    assert "cannot be read" in response.get_json()["error"]["message"] and "utf-8" in response.text
    assert batches_stored(engine_of(app)) == before


def test_blank_lines_of_a_csv_are_skipped_as_in_ndjson(stack: ServiceStack) -> None:
    rows = [prediction_request(), prediction_request(hour=24), prediction_request()]
    lines = csv_body(rows).splitlines()
    body = "\n".join([lines[0], "", lines[1], "", "", lines[2], lines[3], ""]) + "\n"
    receipt = post_csv(stack, body)
    assert receipt.status_code == 202
    assert receipt.json()["items"] == 3 and receipt.json()["accepted"] == 2
    assert [r["index"] for r in receipt.json()["rejected"]] == [1]


def test_ndjson_line_with_a_repeated_key_is_rejected_alone(stack: ServiceStack) -> None:
    good = prediction_request()
    repeated = json.dumps(prediction_request())[:-1] + ', "id": "other"}'
    body = "\n".join([json.dumps(good), repeated])
    receipt = requests.post(
        stack.url("/batches"), data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=10
    ).json()
    assert receipt["accepted"] == 1
    assert receipt["rejected"] == [
        {"index": 1, "id": None, "errors": {"_schema": ["Not valid JSON: repeated key 'id'"]}}
    ]


def test_csv_numbers_python_would_choke_on_are_rejected_per_row(stack: ServiceStack) -> None:
    rows = [prediction_request(), prediction_request(), prediction_request(), prediction_request()]
    lines = csv_body(rows).splitlines()
    lines[2] = lines[2].replace(",20,10,", ",²,10,")  # SubjectAge, hour of the course observation
    lines[3] = lines[3].replace(",20,10,", "," + "9" * 5000 + ",10,")
    lines[4] = lines[4].replace(",20,10,", ",1_000,10,")
    receipt = post_csv(stack, "\n".join(lines) + "\n")
    assert receipt.status_code == 202
    rejected = receipt.json()["rejected"]
    assert [r["index"] for r in rejected] == [1, 2, 3]
    assert all(set(r["errors"]["observation"]) == {"SubjectAge"} for r in rejected)
