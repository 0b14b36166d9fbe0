"""Model rollout through the admin API: checked bundles only, admin keys only; the schema follows the model.

The gateway app on a migrated SQLite file and a scratch artifacts directory holding the committed bundle and
copies of it under new version names.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.feature_spec import PIPELINE_FILE, SPEC_FILE, current_version
from core.monitoring.measures import MONITOR_RUN
from core.rollout.state import Rollout, canary_bucket
from core.settings import PROJECT_ROOT, Settings
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.monitoring import latest_snapshot
from core.storage.observations import find_prediction, insert_queued
from core.storage.records import utc_now
from core.storage.rollouts import write_rollout
from gateway.context import EXTENSION
from tests.bundles import add_version, change_spec_column, flip_one_byte, scratch_artifacts
from tests.factories import new_id, prediction_request
from tests.test_api_keys import bearer, engine_of, make_key
from worker.monitor import take_snapshot

CANDIDATE = "2026.12.01"
OLDER = 110  # a SubjectAge the committed spec refuses (at most 100) and the candidate's accepts (at most 120)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """The committed bundle (current) and a candidate version beside it that accepts ages up to 120."""
    folder = scratch_artifacts(tmp_path / "artifacts")
    change_spec_column(add_version(folder, CANDIDATE), "SubjectAge", maximum=120)
    return folder


@pytest.fixture
def make_gateway(make_app: Callable[..., Flask], artifacts: Path) -> Callable[..., Flask]:
    """Build gateways (conftest's make_app) on the scratch artifacts directory."""
    return functools.partial(make_app, artifacts_dir=artifacts)


@pytest.fixture
def app(make_gateway: Callable[..., Flask]) -> Flask:
    return make_gateway()


@pytest.fixture
def gateway(app: Flask) -> Flask:
    """The app that conftest's client sends to, by the name these tests give it."""
    return app


def followed(gateway: Flask) -> None:
    """Make the gateway read the rollout now, as its thread does every ROLLOUT_CHECK_S."""
    gateway.extensions[EXTENSION].rollout.check_now()


def served(client: FlaskClient) -> dict[str, Any]:
    answer: dict[str, Any] = client.get("/models").get_json()
    return answer


def test_before_any_change_the_settings_version_serves_and_every_bundle_is_listed(
    client: FlaskClient, artifacts: Path
) -> None:
    models = served(client)
    committed = current_version(artifacts)
    assert models["rollout"] == {
        "stable_version": committed, "canary_version": None, "canary_percent": 0, "shadow_version": None,
    }  # fmt: skip
    assert models["stored"] is False
    assert models["history"] == []
    listed = {bundle["version"]: bundle for bundle in models["versions"]}
    assert set(listed) == {committed, CANDIDATE}
    assert listed[committed]["role"] == "stable"
    assert listed[CANDIDATE] | {"role": None, "problem": None} == listed[CANDIDATE]
    assert listed[CANDIDATE]["held_out_precision"] >= listed[CANDIDATE]["precision_bar"]


def test_a_canary_of_a_tampered_bundle_is_refused_naming_the_checksum(
    client: FlaskClient, artifacts: Path
) -> None:
    flip_one_byte(artifacts / CANDIDATE / PIPELINE_FILE)
    refused = client.post("/models/canary", json={"version": CANDIDATE, "percent": 10})
    assert refused.status_code == 409
    message = refused.get_json()["error"]["message"]
    assert "checksum verification failed" in message and PIPELINE_FILE in message
    assert str(artifacts) not in message  # the server's paths stay on the server
    assert served(client)["stored"] is False and served(client)["history"] == []
    problem = {b["version"]: b["problem"] for b in served(client)["versions"]}[CANDIDATE]
    assert "checksum" in problem


def test_a_canary_below_its_precision_bar_is_refused_naming_both(
    client: FlaskClient, artifacts: Path
) -> None:
    add_version(artifacts, "2026.12.02", precision_bar=0.99)
    refused = client.post("/models/canary", json={"version": "2026.12.02", "percent": 10})
    assert refused.status_code == 409
    assert (
        "held-out precision 0.5206 is below its precision bar 0.9900"
        in refused.get_json()["error"]["message"]
    )
    promoted_anyway = client.post("/models/stable", json={"version": "2026.12.02"})
    assert promoted_anyway.status_code == 409
    assert served(client)["history"] == []


def test_a_version_with_no_bundle_is_404_and_a_bad_body_422(client: FlaskClient) -> None:
    assert client.post("/models/canary", json={"version": "2099.01.01", "percent": 5}).status_code == 404
    assert client.post("/models/stable", json={"version": "../artifacts"}).status_code == 404
    for body in (
        {"version": CANDIDATE},
        {"version": CANDIDATE, "percent": 101},
        {"version": CANDIDATE, "percent": True},
        {"version": 7, "percent": 5},
    ):
        bad = client.post("/models/canary", json=body)
        assert bad.status_code == 422, body
        assert bad.get_json()["error"]["code"] == "validation_error"


def test_promote_or_rollback_without_a_canary_is_a_409_saying_so(client: FlaskClient) -> None:
    for action in ("promote", "rollback"):
        refused = client.post(f"/models/{action}")
        assert refused.status_code == 409
        assert "no canary to" in refused.get_json()["error"]["message"]


def test_without_the_admin_scope_the_models_endpoints_are_403(make_gateway: Callable[..., Flask]) -> None:
    gateway = make_gateway(auth_required=True)
    client = gateway.test_client()
    uploader = bearer(make_key(engine_of(gateway), "submit", "read", name="uploader"))
    for method, path, body in (
        ("GET", "/models", None),
        ("POST", "/models/canary", {"version": CANDIDATE, "percent": 10}),
        ("POST", "/models/promote", None),
        ("POST", "/models/rollback", None),
        ("POST", "/models/stable", {"version": CANDIDATE}),
    ):
        answer = client.open(path, method=method, json=body, headers=uploader)
        assert answer.status_code == 403, path
        assert "needs the 'admin' scope" in answer.get_json()["error"]["message"]
        assert client.open(path, method=method, json=body).status_code == 401
    admin = bearer(make_key(engine_of(gateway), "admin"))
    assert client.get("/models", headers=admin).get_json()["history"] == []  # nothing changed


def test_each_change_is_recorded_with_the_admin_key_that_made_it(make_gateway: Callable[..., Flask]) -> None:
    gateway = make_gateway(auth_required=True)
    client = gateway.test_client()
    ops = bearer(make_key(engine_of(gateway), "admin", name="ops-on-call"))
    started = client.post("/models/canary", json={"version": CANDIDATE, "percent": 25}, headers=ops)
    assert started.status_code == 200
    assert started.get_json() == {
        "action": "canary",
        "by": "ops-on-call",
        "rollout": {"stable_version": current_version(gateway.extensions[EXTENSION].settings.artifacts_dir),
                    "canary_version": CANDIDATE, "canary_percent": 25, "shadow_version": None},
        "effective_within_s": 2.0,
    }  # fmt: skip
    assert client.post("/models/promote", headers=ops).status_code == 200
    models = client.get("/models", headers=ops).get_json()
    assert models["rollout"] == {
        "stable_version": CANDIDATE, "canary_version": None, "canary_percent": 0, "shadow_version": None,
    }  # fmt: skip
    assert [(e["action"], e["by"]) for e in models["history"]] == [
        ("promote", "ops-on-call"),
        ("canary", "ops-on-call"),
    ]


def id_on_canary(percent: int, *, on: bool) -> str:
    """Return a new observation id whose bucket is (on=True) or is not under percent."""
    while (canary_bucket(candidate := new_id("rollout")) < percent) != on:
        pass
    return candidate


def test_the_schema_follows_the_version_an_id_lands_on_and_a_replay_stays_accepted(
    gateway: Flask, client: FlaskClient
) -> None:
    committed = current_version(gateway.extensions[EXTENSION].settings.artifacts_dir)
    assert client.post("/models/canary", json={"version": CANDIDATE, "percent": 50}).status_code == 200
    followed(gateway)
    on_canary, on_stable = id_on_canary(50, on=True), id_on_canary(50, on=False)

    accepted = client.post("/predict", json=prediction_request(id=on_canary, SubjectAge=OLDER))
    assert accepted.status_code == 202
    refused = client.post("/predict", json=prediction_request(id=on_stable, SubjectAge=OLDER))
    assert refused.status_code == 422
    assert "SubjectAge" in refused.get_json()["error"]["fields"]["observation"]
    assert client.post("/predict", json=prediction_request(id=on_stable)).status_code == 202
    with engine_of(gateway).connect() as conn:
        assert find_prediction(conn=conn, observation_id=on_canary).accepted_version == CANDIDATE  # type: ignore[union-attr]
        assert find_prediction(conn=conn, observation_id=on_stable).accepted_version == committed  # type: ignore[union-attr]
    assert client.get(f"/predictions/{on_canary}").get_json()["accepted_version"] == CANDIDATE

    assert client.post("/models/rollback").status_code == 200
    followed(gateway)
    # Its id now lands on the stable version, which refuses age 110: a replay is still answered as one.
    replay = client.post("/predict", json=prediction_request(id=on_canary, SubjectAge=OLDER))
    assert replay.status_code == 202
    assert replay.get_json()["accepted_version"] == CANDIDATE
    other = client.post("/predict", json=prediction_request(id=on_canary, SubjectAge=OLDER, hour=3))
    assert other.status_code == 422  # not the stored observation: validated as any new one
    assert client.post("/predict", json=prediction_request(SubjectAge=OLDER)).status_code == 422


def test_a_batch_is_accepted_whole_by_the_version_its_id_lands_on(
    gateway: Flask, client: FlaskClient
) -> None:
    older = [prediction_request(SubjectAge=OLDER) for _ in range(3)]
    assert client.post("/models/canary", json={"version": CANDIDATE, "percent": 100}).status_code == 200
    followed(gateway)
    on_canary = client.post("/batches", json={"observations": older}).get_json()
    assert (on_canary["accepted"], on_canary["rejected_count"]) == (3, 0)
    results = client.get(f"/batches/{on_canary['batch_id']}/results").get_data(as_text=True)
    assert results.count(f'"accepted_version": "{CANDIDATE}"') == 3

    assert client.post("/models/rollback").status_code == 200
    followed(gateway)
    on_stable = client.post("/batches", json={"observations": [prediction_request(SubjectAge=OLDER)]})
    assert on_stable.get_json()["rejected_count"] == 1


@pytest.mark.slow  # runs the command line over and over
def test_the_command_line_shows_and_changes_the_rollout(tmp_path: Path, artifacts: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade_to_head(database_url)
    env = {**os.environ, "DATABASE_URL": database_url, "ARTIFACTS_DIR": str(artifacts)}

    def models(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "admin.rollout", *argv]
        return subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)

    assert models("canary", CANDIDATE, "--percent", "10").returncode == 0
    status = models("status")
    assert status.returncode == 0
    assert f"canary {CANDIDATE} on 10 % of ids" in status.stdout
    assert "\tcanary\tcli\t" in status.stdout
    again = models("canary", "2099.01.01", "--percent", "10")
    assert again.returncode == 1 and "no bundle of that version" in again.stderr
    assert models("rollback").returncode == 0
    assert "\trollback\tcli\t" in models("status").stdout


def test_monitoring_follows_a_promotion_without_a_restart(
    client: FlaskClient, gateway: Flask, artifacts: Path
) -> None:
    committed = current_version(artifacts)
    add_version(artifacts, "2026.12.08", precision_bar=0.45)
    before = client.get("/monitoring").get_json()
    assert (before["model_version"], before["precision_bar"]) == (committed, 0.5)

    assert client.post("/models/stable", json={"version": "2026.12.08"}).status_code == 200
    followed(gateway)

    after = client.get("/monitoring").get_json()
    assert (after["model_version"], after["precision_bar"]) == ("2026.12.08", 0.45)
    assert "model_precision_bar 0.45" in client.get("/metrics").get_data(as_text=True)


def test_the_monitor_task_measures_against_the_stored_stable_version(tmp_path: Path, artifacts: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    upgrade_to_head(database_url)
    settings = Settings(database_url=database_url, broker_url="memory://", artifacts_dir=artifacts)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            write_rollout(
                conn=conn, rollout=Rollout(stable_version=CANDIDATE), action="set", by="cli", now=utc_now()
            )

        take_snapshot(engine=engine, settings=settings)

        with engine.connect() as conn:
            _, rows = latest_snapshot(conn=conn)
    finally:
        engine.dispose()
    assert [row.subject for row in rows if row.figure == MONITOR_RUN] == [CANDIDATE]


def test_a_shadow_is_checked_like_a_canary_and_stopping_none_is_a_409(
    client: FlaskClient, artifacts: Path
) -> None:
    committed = current_version(artifacts)
    assert client.delete("/models/shadow").status_code == 409
    assert client.post("/models/shadow", json={"version": committed}).status_code == 409  # it serves already
    tampered = add_version(artifacts, "2026.12.08")
    flip_one_byte(tampered / PIPELINE_FILE)
    refused = client.post("/models/shadow", json={"version": "2026.12.08"})
    assert refused.status_code == 409 and "checksum" in refused.get_json()["error"]["message"]

    started = client.post("/models/shadow", json={"version": CANDIDATE})
    assert started.status_code == 200 and started.get_json()["rollout"]["shadow_version"] == CANDIDATE
    roles = {b["version"]: b["role"] for b in served(client)["versions"]}
    assert (roles[committed], roles[CANDIDATE]) == ("stable", "shadow")
    assert [e["action"] for e in served(client)["history"]] == ["shadow"]
    assert client.delete("/models/shadow").get_json()["rollout"]["shadow_version"] is None


@pytest.mark.slow  # runs the command line over and over
def test_reassigning_a_withdrawn_canary_moves_the_rows_the_stable_schema_takes_and_fails_the_others(
    tmp_path: Path, artifacts: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'reassign.db'}"
    upgrade_to_head(database_url)
    env = {**os.environ, "DATABASE_URL": database_url, "ARTIFACTS_DIR": str(artifacts)}

    def models(*argv: str, check_s: float = 0.1) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "admin.rollout", *argv]
        ran_env = {**env, "ROLLOUT_CHECK_S": str(check_s)}
        return subprocess.run(
            command, env=ran_env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
        )

    committed = current_version(artifacts)
    fits, older = new_id("fits"), new_id("older")  # older: an age only the candidate's spec takes
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for observation_id, age in ((fits, 40), (older, OLDER)):
                body = prediction_request(id=observation_id, SubjectAge=age)
                insert_queued(
                    conn=conn,
                    observation_id=observation_id,
                    observation=body["observation"],
                    now=utc_now(),
                    accepted_version=CANDIDATE,
                )
        assert models("canary", CANDIDATE, "--percent", "10").returncode == 0
        serving = models("reassign", CANDIDATE)
        assert serving.returncode == 1 and "serves" in serving.stderr  # roll it back first
        assert models("rollback").returncode == 0
        # Gateways follow the rollback within ROLLOUT_CHECK_S: rows may still arrive for the canary till then.
        too_soon = models("reassign", CANDIDATE, check_s=30)
        assert too_soon.returncode == 1 and "run this again in" in too_soon.stderr

        done = models("reassign", CANDIDATE)

        assert done.returncode == 0, done.stderr
        assert f"1 queued rows of {CANDIDATE} to {committed}; 1 failed" in done.stderr
        with engine.connect() as conn:
            moved, refused = (find_prediction(conn=conn, observation_id=i) for i in (fits, older))
    finally:
        engine.dispose()
    assert moved is not None and (moved.status, moved.accepted_version) == ("queued", committed)
    assert refused is not None and refused.status == "failed"
    assert f"version {committed}'s schema refuses it" in (refused.failure_reason or "")
    assert "SubjectAge" in (refused.failure_reason or "")


def test_a_body_without_an_id_is_a_422_even_when_the_canary_it_would_land_on_cannot_load(
    client: FlaskClient, gateway: Flask, artifacts: Path
) -> None:
    assert client.post("/models/canary", json={"version": CANDIDATE, "percent": 100}).status_code == 200
    flip_one_byte(artifacts / CANDIDATE / SPEC_FILE)  # broken after the call checked it
    followed(gateway)

    no_id = client.post("/predict", json={"observation": prediction_request()["observation"]})
    assert no_id.status_code == 422 and no_id.get_json()["error"]["code"] == "validation_error"
    on_canary = client.post("/predict", json=prediction_request())
    assert on_canary.status_code == 503 and on_canary.headers["Retry-After"] == "30"


def test_metrics_say_what_serves_each_role_and_share(
    client: FlaskClient, gateway: Flask, artifacts: Path
) -> None:
    committed = current_version(artifacts)
    add_version(artifacts, "2026.12.08")
    assert client.post("/models/canary", json={"version": CANDIDATE, "percent": 25}).status_code == 200
    assert client.post("/models/shadow", json={"version": "2026.12.08"}).status_code == 200
    followed(gateway)

    exposed = client.get("/metrics").get_data(as_text=True)

    assert f'model_rollout_percent{{model_version="{committed}",role="stable"}} 75.0' in exposed
    assert f'model_rollout_percent{{model_version="{CANDIDATE}",role="canary"}} 25.0' in exposed
    assert 'model_rollout_percent{model_version="2026.12.08",role="shadow"} 0.0' in exposed
