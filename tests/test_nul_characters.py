"""A NUL character (which Postgres text cannot hold) is refused where text is read, on every backend.

Each probe gets a 4xx in the envelope; in an upload, the item that holds it is rejected and the others are
accepted as usual.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import requests

from devstack.stack import ServiceStack
from tests.database import count_rows
from tests.factories import new_id, observation, prediction_request

NUL = "\x00"
FEATURES = list(observation())


def with_nul_id() -> dict[str, Any]:
    return prediction_request(id=new_id("nul") + NUL)


def with_nul_key() -> dict[str, Any]:
    item = prediction_request()
    item["observation"]["hour" + NUL] = 1
    return item


def with_nul_category() -> dict[str, Any]:
    return prediction_request(day_of_week="Monday" + NUL)


def with_nul_top_level_key() -> dict[str, Any]:
    return {**prediction_request(), "note" + NUL: "x"}


BAD_ITEMS = [with_nul_id, with_nul_key, with_nul_category, with_nul_top_level_key]


@pytest.mark.parametrize("suffix", ["", "/results", "/rejections"])
def test_reading_a_batch_whose_id_holds_nul_is_404(stack: ServiceStack, suffix: str) -> None:
    answer = requests.get(stack.url(f"/batches/a%00b{suffix}"), timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_reading_or_labelling_an_observation_whose_id_holds_nul_is_a_4xx(stack: ServiceStack) -> None:
    assert requests.get(stack.url("/predictions/a%00b"), timeout=10).status_code == 404
    assert requests.get(stack.url("/predictions/a%00b?wait=1"), timeout=10).status_code == 404
    labelled = requests.post(stack.url("/update"), json={"id": "a" + NUL, "true_class": 1}, timeout=10)
    assert labelled.status_code in (404, 422)
    assert "error" in labelled.json()


@pytest.mark.parametrize("make_item", BAD_ITEMS)
def test_a_submission_holding_nul_is_422_and_nothing_is_stored(stack: ServiceStack, make_item: Any) -> None:
    item = make_item()
    answer = requests.post(stack.url("/predict"), json=item, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
    if NUL not in item["id"]:  # Postgres could not even be asked about one that holds it
        with stack.engine.connect() as conn:
            assert count_rows(conn=conn, observation_ids=[item["id"]]) == 0


def as_ndjson(items: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(item) for item in items)


def as_json(items: list[dict[str, Any]]) -> str:
    return json.dumps({"observations": items})


def as_csv(items: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", *FEATURES])
    for item in items:
        writer.writerow([item["id"], *(item["observation"].get(name, "") for name in FEATURES)])
    return buffer.getvalue()


FORMATS = {"application/x-ndjson": as_ndjson, "application/json": as_json, "text/csv": as_csv}


@pytest.mark.parametrize("content_type", FORMATS)
def test_an_upload_keeps_its_good_items_when_others_hold_nul(stack: ServiceStack, content_type: str) -> None:
    bad = [with_nul_id(), with_nul_category()]
    if content_type != "text/csv":  # a CSV row has no room for another key
        bad += [with_nul_key(), with_nul_top_level_key()]
    good = [prediction_request(), prediction_request()]
    items = [good[0], *bad, good[1]]
    answer = requests.post(
        stack.url("/batches"),
        data=FORMATS[content_type](items).encode(),
        headers={"Content-Type": content_type},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    assert (receipt["accepted"], receipt["rejected_count"]) == (2, len(bad))
    assert [r["index"] for r in receipt["rejected"]] == list(range(1, len(bad) + 1))
    rejections = requests.get(stack.url(f"/batches/{receipt['batch_id']}/rejections"), timeout=10)
    stored = [json.loads(line) for line in rejections.text.splitlines()]
    assert [r["index"] for r in stored] == list(range(1, len(bad) + 1))
    # Shown as U+FFFD: the stored text holds no NUL, and the client still sees which id it sent.
    assert stored[0]["id"] == bad[0]["id"].replace(NUL, "\ufffd")
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[item["id"] for item in good]) == 2


def test_an_atomic_upload_with_an_item_holding_nul_is_422_and_stores_nothing(stack: ServiceStack) -> None:
    good = prediction_request()
    answer = requests.post(
        stack.url("/batches?atomic=true"),
        data=as_ndjson([good, with_nul_id()]),
        headers={"Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    assert answer.status_code == 422
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[good["id"]]) == 0


def test_a_csv_header_holding_nul_is_422(stack: ServiceStack) -> None:
    body = as_csv([prediction_request()]).replace("hour", "hour" + NUL, 1)
    answer = requests.post(
        stack.url("/batches"), data=body.encode(), headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
