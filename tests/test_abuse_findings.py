"""Each finding of the outside abuse run stays closed, seen through the gateway's real routes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.feature_spec import BundleError
from core.settings import Settings
from core.storage.batches import create_batch, finish_batch
from core.storage.bulk_rows import add_batch_items, insert_queued_many
from core.storage.observations import mark_failed, save_predictions
from core.storage.records import PredictionResult, QueuedObservation, utc_now
from gateway.app import create_app
from gateway.batches.downloads import spreadsheet_cell
from tests.factories import new_id, observation, prediction_request

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def store_finished_batch(app: Flask, items: list[tuple[str, str | None]], model_version: str) -> str:
    """Store a batch whose items are predicted, or failed with the given reason; return its id."""
    batch_id = new_id("batch")
    now = utc_now()
    with app.extensions["predictions"].engine.begin() as conn:
        create_batch(conn=conn, batch_id=batch_id, now=now)
        queued = [QueuedObservation(id=item_id, observation=observation()) for item_id, _ in items]
        insert_queued_many(conn=conn, observations=queued, batch_id=batch_id, now=now)
        add_batch_items(conn=conn, batch_id=batch_id, positions=list(enumerate(i for i, _ in items)))
        finish_batch(conn=conn, batch_id=batch_id, items=len(items), accepted=len(items), rejected=0)
        done = [PredictionResult(id=i, proba=0.25, prediction=False) for i, reason in items if reason is None]
        save_predictions(conn=conn, results=done, model_version=model_version, now=now)
        for item_id, reason in items:
            if reason is not None:
                mark_failed(conn=conn, observation_ids=[item_id], reason=reason, now=now)
    return batch_id


# 1. Spreadsheet formula injection in the CSV download.


@pytest.mark.parametrize(
    "start", ["=", "+", "-", "@", "\t", "\r", "\n", " =", "\u00a0=", " \u3000+", "\uff1d", "\ufe66", "\uff20"]
)
def test_a_text_cell_that_a_spreadsheet_would_run_gets_a_leading_quote(start: str) -> None:
    # Blanks before the sign, and its fullwidth (U+FF1D, U+FF20) or small (U+FE66) forms, run as formulas.
    assert spreadsheet_cell(f"{start}HYPERLINK(0)") == f"'{start}HYPERLINK(0)"


def test_a_text_cell_that_begins_with_a_quote_gets_a_second_one() -> None:
    # So the first quote is always the escape: one dropped gives the text back, whichever it was.
    assert spreadsheet_cell("'=1") == "''=1"
    assert spreadsheet_cell("'plain") == "''plain"
    assert spreadsheet_cell("=1") == "'=1"


@pytest.mark.parametrize(
    ("value", "cell"), [("a=1", "a=1"), ("a '", "a '"), ("", ""), (0.25, 0.25), (3, 3), (None, None)]
)
def test_other_cells_are_written_as_they_are(value: Any, cell: Any) -> None:
    assert spreadsheet_cell(value) == cell


def test_csv_results_escape_formula_ids_reasons_and_versions_but_ndjson_stays_exact(
    app: Flask, client: FlaskClient
) -> None:
    items: list[tuple[str, str | None]] = [
        ("=1+1", None),
        ("+cmd|' /C calc'!A0", None),
        ("-2+3", None),
        ("@SUM(A1)", '=HYPERLINK("http://evil.example")'),
        ("plain-id", None),
    ]
    batch_id = store_finished_batch(app, items, model_version="=IMPORTXML(A1)")

    table = list(csv.DictReader(io.StringIO(client.get(f"/batches/{batch_id}/results?format=csv").text)))
    assert [row["id"] for row in table] == ["'=1+1", "'+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1)", "plain-id"]
    assert table[3]["failure_reason"] == '\'=HYPERLINK("http://evil.example")'
    assert table[0]["model_version"] == "'=IMPORTXML(A1)"
    assert table[0]["proba"] == "0.25" and table[0]["prediction"] == "false"

    lines = client.get(f"/batches/{batch_id}/results?format=ndjson").text.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["id"] for row in rows] == [item_id for item_id, _ in items]
    assert rows[3]["failure_reason"] == '=HYPERLINK("http://evil.example")'
    assert rows[0]["model_version"] == "=IMPORTXML(A1)"


# 2. Compressed request bodies.


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", prediction_request()),
        ("/update", {"id": "x", "true_class": True}),
        ("/batches", {"observations": [prediction_request()]}),
    ],
)
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "identity, gzip"])
def test_a_compressed_body_is_415_naming_the_encoding(
    client: FlaskClient, path: str, body: Any, coding: str
) -> None:
    response = client.post(
        path,
        data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert f"Content-Encoding {coding!r} is not supported" in error["message"]
    assert "uncompressed" in error["message"]
    assert response.headers["Accept-Encoding"] == "identity"


def test_a_body_sent_with_identity_encoding_is_read_as_usual(client: FlaskClient) -> None:
    response = client.post(
        "/predict", json={"id": "x"}, headers={"Content-Encoding": "identity"}
    )  # not valid, so nothing is stored or published
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"observation": ["Missing data for required field."]}


# 3. Ids with dot segments, which no client normalising URLs could read back.


@pytest.mark.parametrize("dotted", ["x/../b", "a/./b", "/..", "../x", "x/.", "."])
def test_an_id_with_a_dot_segment_is_422_saying_why(client: FlaskClient, dotted: str) -> None:
    for path, body in (
        ("/predict", prediction_request(id=dotted)),
        ("/update", {"id": dotted, "true_class": 1}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, path
        [message] = response.get_json()["error"]["fields"]["id"]
        assert "'.' or '..' as a path segment" in message and "could not be read back" in message


# 4. Client request ids.


@pytest.mark.parametrize(
    "request_id", ["req-42", "0f8fad5b-d9cb-469f-a165-70867728950e", "01J9Z.trace_7", "x" * 64]
)
def test_a_plain_client_request_id_is_kept_and_echoed(client: FlaskClient, request_id: str) -> None:
    response = client.get("/no-such-page", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    assert response.get_json()["error"]["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id", ["x" * 65, "has space", "id;drop", "a=b", "<script>", '"quoted"', "path/like", "caf\xe9"]
)
def test_any_other_client_request_id_is_replaced_by_our_own(client: FlaskClient, request_id: str) -> None:
    response = client.get("/no-such-page", headers={"X-Request-ID": request_id})
    ours = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", ours)
    assert response.get_json()["error"]["request_id"] == ours


# 5. Security headers, and a docs page served from the service itself.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", "/no-such-page"),
        ("POST", "/predict"),
        ("OPTIONS", "/predict"),
    ],
)
def test_every_response_carries_the_security_headers(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


def test_docs_page_loads_only_files_served_here_under_a_strict_policy(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "http" not in policy
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "style=" not in html  # nothing inline for the policy to allow
    assert "/openapi.json" in html

    loaded = re.findall(r'(?:src|href)="(/docs/[^"]+)"', html)
    assert set(loaded) == {
        "/docs/swagger-ui.css",
        "/docs/favicon-32x32.png",
        "/docs/swagger-ui-bundle.js",
        "/docs/start.js",
    }
    types = {"css": "text/css", "js": "text/javascript", "png": "image/png"}
    for path in loaded:
        asset = client.get(path)
        assert asset.status_code == 200, path
        assert asset.mimetype in (types[path.rsplit(".", 1)[1]], "application/javascript"), path
        assert {name: asset.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
        asset.close()
    assert "/openapi.json" in client.get("/docs/start.js").get_data(as_text=True)


def test_no_response_refers_to_a_cdn(client: FlaskClient) -> None:
    for path in (
        "/docs",
        "/docs/start.js",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/openapi.json",
    ):
        response = client.get(path)
        assert response.status_code == 200
        body = response.get_data()
        assert b"unpkg" not in body and b"cdn.jsdelivr" not in body, path
        response.close()


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-initializer.js", "..%2Fflask_swagger_ui.py", "LICENSE"]
)
def test_docs_serve_only_the_files_the_page_loads(client: FlaskClient, name: str) -> None:
    response = client.get(f"/docs/{name}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


# 6. Bundle pinning at the gateway (the loader's own checks: tests/test_model_bundle.py).


def test_gateway_refuses_to_start_on_a_bundle_other_than_the_pinned_one(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gateway.db'}", model_sha256="0" * 64)
    with pytest.raises(BundleError, match="does not match MODEL_SHA256"):
        create_app({"SETTINGS": settings})
