"""Who may do what: API keys with scopes, stored hashed, revocable, and a rate limit per key."""

from __future__ import annotations

import csv
import functools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from client import PredictionClient, ServiceError
from core.api_keys import PREFIX_LENGTH, key_digest, new_api_key
from core.settings import PROJECT_ROOT, Settings
from core.storage.api_keys import insert_api_key, revoke_api_key
from core.storage.migrate import upgrade_to_head
from core.storage.observations import insert_queued
from core.storage.records import utc_now
from devstack.stack import ServiceStack, wait_until
from gateway.access.rate_limits import SubmissionLimits
from gateway.app import BLUEPRINTS, create_app
from gateway.declared_routes import declarations_of
from tests.database import api_key_table_text, count_rows
from tests.factories import COURSE_OBSERVATION, new_id, observation, prediction_request

# Each declared route, at a path of its rule, with the challenge a request without a key gets.
PATH_VALUES = {"observation_id": "some-id", "batch_id": "some-batch", "name": "swagger-ui.css"}
DECLARED = declarations_of(BLUEPRINTS)
BEARER_ONLY = 'Bearer realm="contraband"'
GUARDED = [
    (route.method, route.path.format_map(PATH_VALUES), route.browser_page)
    for route in DECLARED
    if route.scope is not None
]
OPEN = [route.path.format_map(PATH_VALUES) for route in DECLARED if route.scope is None]


def make_key(engine: Engine, *scopes: str, name: str | None = None) -> str:
    """Store a new key with these scopes (as `python -m admin.keys create` does); return the key."""
    key = new_api_key()
    with engine.begin() as conn:
        assert insert_api_key(
            conn=conn,
            name=name or new_id("key"),
            prefix=key[:PREFIX_LENGTH],
            key_sha256=key_digest(key),
            scopes=scopes,
            now=utc_now(),
        )
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def engine_of(app: Flask) -> Engine:
    engine: Engine = app.extensions["predictions"].engine
    return engine


# --- the gateway app against a migrated SQLite file, keys required -----------------------------------------


@pytest.fixture
def make_gateway(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """Build gateways (conftest's make_app) that require keys."""
    return functools.partial(make_app, auth_required=True, api_key_cache_s=5.0)


@pytest.fixture
def app(make_gateway: Callable[..., Flask]) -> Flask:
    return make_gateway()


@pytest.fixture
def gateway(app: Flask) -> Flask:
    """The app that conftest's client sends to, by the name these tests give it."""
    return app


@pytest.mark.parametrize(("method", "path", "browser_page"), GUARDED)
def test_without_a_key_each_guarded_endpoint_is_401_with_www_authenticate(
    client: FlaskClient, method: str, path: str, browser_page: bool
) -> None:
    response = client.open(path, method=method, json=prediction_request())
    assert response.status_code == 401
    # A page a browser opens asks for the key as a Basic password too.
    basic = ', Basic realm="contraband"' if browser_page else ""
    assert response.headers["WWW-Authenticate"] == BEARER_ONLY + basic
    error = response.get_json()["error"]
    assert error["code"] == "unauthorized"
    assert "Authorization: Bearer" in error["message"]


def test_a_submission_without_a_key_stores_nothing(gateway: Flask, client: FlaskClient) -> None:
    body = prediction_request()
    assert client.post("/predict", json=body).status_code == 401
    assert client.post("/batches", json={"observations": [prediction_request()]}).status_code == 401
    with engine_of(gateway).connect() as conn:
        assert count_rows(conn=conn) == 0


def test_health_metrics_and_the_api_description_stay_open(client: FlaskClient) -> None:
    for path in OPEN:
        with client.get(path) as response:  # closed: a Swagger UI file is sent from an open file
            assert response.status_code == 200, path
    assert client.get("/ready").status_code != 401
    assert client.options("/predict").status_code == 204


def test_an_unknown_key_and_a_malformed_header_are_401(client: FlaskClient) -> None:
    unknown = client.get("/predictions/x", headers=bearer(new_api_key()))
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"] == 'Bearer realm="contraband", error="invalid_token"'
    assert unknown.get_json()["error"]["message"] == "The API key is not valid: unknown or revoked."
    basic = client.get("/predictions/x", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


def test_a_read_only_key_cannot_submit(gateway: Flask, client: FlaskClient) -> None:
    key = make_key(engine_of(gateway), "read", name="dashboard")
    body = prediction_request()
    refused = client.post("/predict", json=body, headers=bearer(key))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    assert "'dashboard'" in refused.get_json()["error"]["message"]
    assert "'submit' scope" in refused.get_json()["error"]["message"]
    assert 'error="insufficient_scope", scope="submit"' in refused.headers["WWW-Authenticate"]
    with engine_of(gateway).connect() as conn:
        assert count_rows(conn=conn) == 0
    assert client.get(f"/predictions/{body['id']}", headers=bearer(key)).status_code == 404  # it may read


def test_a_label_key_can_send_true_outcomes_but_not_read_predictions(
    gateway: Flask, client: FlaskClient
) -> None:
    observation_id = new_id("labelled")
    with engine_of(gateway).begin() as conn:
        insert_queued(conn=conn, observation_id=observation_id, observation=observation(), now=utc_now())
    key = make_key(engine_of(gateway), "label")
    stored = client.post("/update", json={"id": observation_id, "true_class": True}, headers=bearer(key))
    assert stored.status_code == 200
    assert stored.get_json()["true_class"] is True
    assert client.get(f"/predictions/{observation_id}", headers=bearer(key)).status_code == 403
    assert client.get("/performance", headers=bearer(key)).status_code == 403
    assert client.post("/predict", json=prediction_request(), headers=bearer(key)).status_code == 403


def test_an_admin_key_may_do_everything(gateway: Flask, client: FlaskClient) -> None:
    key = make_key(engine_of(gateway), "admin")
    assert client.get("/performance", headers=bearer(key)).status_code == 200
    assert client.get("/predictions/nobody", headers=bearer(key)).status_code == 404
    assert client.get("/batches/none", headers=bearer(key)).status_code == 404
    label = {"id": "nobody", "true_class": 1}
    assert client.post("/update", json=label, headers=bearer(key)).status_code == 404
    assert client.post("/predict", json={}, headers=bearer(key)).status_code == 422


def test_a_revoked_key_is_refused_within_the_cache_ttl(make_gateway: Callable[..., Flask]) -> None:
    ttl = 1.0
    gateway = make_gateway(api_key_cache_s=ttl)
    client = gateway.test_client()
    key = make_key(engine_of(gateway), "read", name="leaked")
    assert client.get("/predictions/x", headers=bearer(key)).status_code == 404  # looked up and cached
    with engine_of(gateway).begin() as conn:
        assert revoke_api_key(conn=conn, name="leaked", now=utc_now()) is not None
    revoked_at = time.monotonic()
    wait_until(lambda: client.get("/predictions/x", headers=bearer(key)).status_code == 401, timeout=ttl + 2)
    assert time.monotonic() - revoked_at <= ttl + 1


def test_submissions_over_a_keys_rate_limit_are_429_with_retry_after(
    make_gateway: Callable[..., Flask],
) -> None:
    gateway = make_gateway(rate_limit_submissions="3/minute")
    client = gateway.test_client()
    busy, other = make_key(engine_of(gateway), "submit", "read"), make_key(engine_of(gateway), "submit")
    # Counted before validation: an invalid body costs a submission too (422 here, nothing stored).
    assert [client.post("/predict", json={}, headers=bearer(busy)).status_code for _ in range(3)] == [422] * 3
    refused = client.post("/predict", json=prediction_request(), headers=bearer(busy))
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "too_many_requests"
    assert "at most 3 per minute" in refused.get_json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.post("/batches", json={"observations": []}, headers=bearer(busy)).status_code == 429
    assert client.get("/predictions/x", headers=bearer(busy)).status_code == 404  # reads are not limited
    assert client.post("/predict", json={}, headers=bearer(other)).status_code == 422  # each key its own
    with engine_of(gateway).connect() as conn:
        assert count_rows(conn=conn) == 0


def test_submissions_go_uncounted_while_redis_cannot_answer(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens there: intake goes on (the database is the source of truth), and the log says so.
    limits = SubmissionLimits(Settings(broker_url="redis://127.0.0.1:1/0", rate_limit_submissions="1/minute"))
    with caplog.at_level(logging.WARNING, logger="gateway.access.rate_limits"):
        for _ in range(3):
            limits.charge_submission("any-key")
    assert [r.getMessage() for r in caplog.records].count(
        "rate limits: Redis did not answer; submissions go uncounted for 5 s"
    ) == 1


def test_batch_items_over_a_keys_allowance_are_429_and_nothing_stored(
    make_gateway: Callable[..., Flask],
) -> None:
    gateway = make_gateway(bulk_max_items=5, rate_limit_batch_items="5/hour")
    client = gateway.test_client()
    key = make_key(engine_of(gateway), "submit")
    first = [prediction_request() for _ in range(3)]
    assert client.post("/batches", json={"observations": first}, headers=bearer(key)).status_code == 202
    second = [prediction_request() for _ in range(3)]
    refused = client.post("/batches", json={"observations": second}, headers=bearer(key))
    assert refused.status_code == 429
    assert "Too many batch items" in refused.get_json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    with engine_of(gateway).connect() as conn:
        assert count_rows(conn=conn, observation_ids=[item["id"] for item in first + second]) == 3


def test_keys_are_stored_hashed(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade_to_head(database_url)
    created = run_keys({"DATABASE_URL": database_url}, "create", "--name", "uploader", "--scopes", "submit")
    key = created.stdout.strip()
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("keys.db*"))  # the WAL file too
    assert key.encode() not in stored
    assert key[PREFIX_LENGTH:].encode() not in stored
    assert key_digest(key).encode() in stored


def test_production_requires_keys_and_local_mode_says_it_is_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    production: dict[str, Any] = {
        "app_env": "production",
        "database_url": "postgresql://db/x",
        "broker_url": "redis://r/0",
    }
    assert Settings(**production).auth_required is True
    with pytest.raises(ValidationError, match="AUTH_REQUIRED"):
        Settings(**production, auth_required=False)
    assert Settings().auth_required is False
    with caplog.at_level(logging.WARNING, logger="gateway.access.checks"):
        app = create_app({"SETTINGS": Settings(database_url=f"sqlite:///{tmp_path / 'open.db'}")})
    assert any("API keys are NOT required" in record.getMessage() for record in caplog.records)
    app.extensions["predictions"].close()


# --- the keys command ---------------------------------------------------------------------------------------


def run_keys(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python -m admin.keys` with these environment variables added."""
    return subprocess.run(
        [sys.executable, "-m", "admin.keys", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def test_keys_command_creates_lists_and_revokes(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'keys.db'}"}
    upgrade_to_head(env["DATABASE_URL"])
    key = run_keys(env, "create", "--name", "ops", "--scopes", "read,label").stdout.strip()
    assert key.startswith("cbk_") and len(key) == 4 + 43
    again = run_keys(env, "create", "--name", "ops", "--scopes", "read", check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    wrong = run_keys(env, "create", "--name", "x", "--scopes", "read,root", check=False)
    assert wrong.returncode == 2 and "unknown scope 'root'" in wrong.stderr

    listed = run_keys(env, "list").stdout
    assert key not in listed
    name, prefix, scopes, _created, revoked = listed.splitlines()[1].split("\t")
    assert (name, prefix, scopes, revoked) == ("ops", key[:PREFIX_LENGTH] + "…", "label,read", "-")

    assert run_keys(env, "revoke", "ops").returncode == 0
    assert run_keys(env, "list").stdout.splitlines()[1].split("\t")[-1] != "-"
    assert run_keys(env, "revoke", "nobody", check=False).returncode == 1


# --- the running service (gunicorn with two workers, Celery worker), keys required -------------------------


@pytest.fixture(scope="module")
def secured_stack(stack: ServiceStack) -> Iterator[ServiceStack]:
    """The stack's gateway restarted with keys required for this module, then as before."""
    with stack.gateway_env(AUTH_REQUIRED="true", API_KEY_CACHE_S="1", RATE_LIMIT_SUBMISSIONS="5/minute"):
        yield stack


def post_once(stack: ServiceStack, path: str, key: str | None, body: Any) -> requests.Response:
    """POST on a connection of its own, so that successive requests spread over the gateway's processes."""
    headers = {"Connection": "close", **(bearer(key) if key else {})}
    return requests.post(stack.url(path), json=body, headers=headers, timeout=10)


def test_on_the_service_keys_decide_who_submits_reads_and_labels(secured_stack: ServiceStack) -> None:
    stack = secured_stack
    submitter, reader, labeller = (make_key(stack.engine, scope) for scope in ("submit", "read", "label"))
    body = prediction_request(id=new_id("secured"))
    assert post_once(stack, "/predict", None, body).status_code == 401
    assert post_once(stack, "/predict", reader, body).status_code == 403
    with stack.engine.connect() as conn:
        assert count_rows(conn=conn, observation_ids=[body["id"]]) == 0

    assert post_once(stack, "/predict", submitter, body).status_code == 202
    result = stack.url(f"/predictions/{body['id']}")
    assert requests.get(result, headers=bearer(submitter), timeout=10).status_code == 403
    with PredictionClient(stack.base_url, api_key=reader) as client:
        assert client.wait(body["id"], timeout=30)["status"] == "done"
    labelled = post_once(stack, "/update", labeller, {"id": body["id"], "true_class": False})
    assert labelled.status_code == 200
    assert requests.get(stack.url("/health"), timeout=10).status_code == 200


def test_on_the_service_the_rate_limit_holds_across_gateway_processes(secured_stack: ServiceStack) -> None:
    # 5 a minute per key, counted in Redis: the two gunicorn workers share it, so exactly 5 of 12 get in.
    busy, other = make_key(secured_stack.engine, "submit"), make_key(secured_stack.engine, "submit")
    answers = [post_once(secured_stack, "/predict", busy, {}) for _ in range(12)]
    assert [a.status_code for a in answers].count(422) == 5
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 7
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    with (
        PredictionClient(secured_stack.base_url, api_key=busy) as client,
        pytest.raises(ServiceError) as limited,
    ):
        client.submit(new_id("limited"), observation())
    assert limited.value.status == 429 and (limited.value.retry_after or 0) >= 1
    assert post_once(secured_stack, "/predict", other, {}).status_code == 422


def test_on_the_service_a_revoked_key_is_refused_within_the_cache_ttl(secured_stack: ServiceStack) -> None:
    stack = secured_stack
    created = run_keys(stack.env, "create", "--name", name := new_id("revoked"), "--scopes", "read")
    key = created.stdout.strip()
    with stack.engine.connect() as conn:
        stored = api_key_table_text(conn=conn)
    assert key not in stored and key_digest(key) in stored

    def answers() -> list[int]:
        headers = {**bearer(key), "Connection": "close"}
        return [requests.get(stack.url("/predictions/x"), headers=headers).status_code for _ in range(4)]

    assert answers() == [404] * 4  # known to (and cached by) the gateway's processes
    run_keys(stack.env, "revoke", name)
    revoked_at = time.monotonic()
    wait_until(lambda: answers() == [401] * 4, timeout=10, interval=0.1)
    assert time.monotonic() - revoked_at <= 1 + 2  # API_KEY_CACHE_S, and the time to ask


def write_stops(path: Path, count: int) -> list[str]:
    ids = [new_id("cli-key") for _ in range(count)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *COURSE_OBSERVATION])
        for observation_id in ids:
            values = [str(v).lower() if isinstance(v, bool) else v for v in COURSE_OBSERVATION.values()]
            writer.writerow([observation_id, *values])
    return ids


def run_cli(stack: ServiceStack, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `contraband submit` against the stack with only these of the key variables set."""
    outer = {name: value for name, value in os.environ.items() if name != "CONTRABAND_API_KEY"}
    command = [sys.executable, "-m", "client.cli", "submit", *args, "--url", stack.base_url]
    return subprocess.run(
        [*command, "--poll-seconds", "0.1"],
        env={**outer, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_takes_its_key_from_the_environment_and_reports_refusals(
    secured_stack: ServiceStack, tmp_path: Path
) -> None:
    stops, out = tmp_path / "stops.csv", tmp_path / "results.csv"
    ids = write_stops(stops, 2)
    uploader = make_key(secured_stack.engine, "submit", "read")
    done = run_cli(secured_stack, str(stops), "--out", str(out), env={"CONTRABAND_API_KEY": uploader})
    assert done.returncode == 0, done.stderr
    assert [row["id"] for row in csv.DictReader(out.read_text().splitlines())] == ids

    anonymous = run_cli(secured_stack, str(stops), env={})
    assert anonymous.returncode == 1
    assert "401 unauthorized" in anonymous.stderr and "CONTRABAND_API_KEY" in anonymous.stderr
    reader = make_key(secured_stack.engine, "read")
    refused = run_cli(secured_stack, str(stops), "--api-key", reader, env={})
    assert refused.returncode == 1
    assert "403 forbidden" in refused.stderr and "'submit' scope" in refused.stderr
