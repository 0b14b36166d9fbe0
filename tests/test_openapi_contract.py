"""The served OpenAPI document tells the truth: schemathesis checks every operation against the real app."""

from __future__ import annotations

import csv
import gc
import io
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.schemas import OpenApiSchema

from core.api_keys import ADMIN, LABEL, READ, SCOPES, SUBMIT, key_digest, new_api_key
from core.feature_spec import FeatureSpec
from core.settings import Settings
from core.storage.api_keys import insert_api_key
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.observations import mark_failed, save_predictions
from core.storage.records import PredictionResult, utc_now
from devstack.course import COURSE_OBSERVATION
from gateway.app import BLUEPRINTS, create_app
from gateway.context import EXTENSION
from gateway.declared_routes import declarations_of
from gateway.openapi.parts import ID_FORMAT
from tests.factories import new_id, prediction_request
from worker.schemas import valid_observation_id

# A case of any operation (schemathesis's Case is generic in its operation).
Case = schemathesis.Case[Any]

# A Redis database no worker reads, and a queue of this module's own: what the app publishes is flushed.
BROKER_URL = "redis://127.0.0.1:6379/14"
QUEUE = f"contract-{new_id()}"
DECLARED = declarations_of(BLUEPRINTS)
# Every operation the routes declare for the document. GET /metrics's Prometheus text is not checked against a
# schema (schemathesis reads no text/plain body): its status, headers and content type are.
OPERATIONS = [(route.method, route.path) for route in DECLARED if route.documented]
# The operations with a body or query argument that can be made invalid; the others have nothing to negate.
NEGATABLE = {
    (route.method, route.path)
    for route in DECLARED
    if route.documented and any(part is not None for part in (route.body, route.uploads, route.query))
}
PATH_VALUES = {"observation_id": "some-id", "batch_id": "some-batch"}
# Pages for people (and their files), not operations of the API: declared, and left out of the document.
PAGES = {route.rule for route in DECLARED if not route.documented}
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# The app runs as in production, keys required: every call carries an admin key, and schemathesis's own checks
# that a call without one is refused apply.
ADMIN_KEY = new_api_key()
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# A second pass calls each guarded operation with a key holding only the scope the document names for it; a
# key holding every other scope (but admin) must get the documented 403.
ONLY = {scope: new_api_key() for scope in (SUBMIT, READ, LABEL)} | {ADMIN: ADMIN_KEY}
ALL_BUT = {scope: new_api_key() for scope in SCOPES}
GUARDED = [(route.method, route.path) for route in DECLARED if route.documented and route.scope is not None]


def authorized(app: Flask) -> FlaskClient:
    """Return a test client whose every request carries the admin key."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]
    return client


@dataclass(frozen=True)
class Seeded:
    """Stored observations in each state, and a batch, for the operations that read them."""

    queued: str
    done: str
    failed: str
    batch: str

    @property
    def observations(self) -> list[str]:
        return [self.queued, self.done, self.failed]


def _csv_uploads(spec: FeatureSpec) -> st.SearchStrategy[bytes]:
    """Return CSV uploads with a right header and rows of valid or arbitrary cells."""
    columns = ["id", *spec.names]
    valid = {"id": st.text(min_size=1, max_size=12)} | {
        name: st.just(str(value).lower() if isinstance(value, bool) else str(value))
        for name, value in COURSE_OBSERVATION.items()
    }
    row = st.fixed_dictionaries({name: valid[name] | st.text(max_size=8) for name in columns})

    @st.composite
    def upload(draw: st.DrawFn) -> bytes:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=draw(st.permutations(columns)))
        writer.writeheader()
        writer.writerows(draw(st.lists(row, min_size=1, max_size=4)))
        return buffer.getvalue().encode()

    return upload()


def _ndjson_uploads() -> st.SearchStrategy[bytes]:
    """Return NDJSON uploads: valid requests and arbitrary lines, at least one of them not blank."""
    request = st.text(min_size=1, max_size=12).map(lambda i: json.dumps(prediction_request(id=f"nd-{i}")))
    lines = st.lists(request | st.text(max_size=20).map(lambda t: t.replace("\n", " ")), min_size=1)
    return lines.map("\n".join).filter(lambda body: body.strip(" \t\n\r\x0b\x0c") != "").map(str.encode)


def _read_ndjson(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> list[Any]:
    """Read an NDJSON answer as the document describes it: its lines as an array."""
    return [json.loads(line) for line in response.text.splitlines() if line]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'gateway.db'}"
    upgrade_to_head(database_url)
    keys = {"contract": (ADMIN_KEY, {ADMIN})}
    keys |= {f"only-{scope}": (key, {scope}) for scope, key in ONLY.items() if scope != ADMIN}
    keys |= {f"all-but-{scope}": (key, {SUBMIT, READ, LABEL} - {scope}) for scope, key in ALL_BUT.items()}
    with make_engine(database_url).begin() as conn:
        for name, (key, scopes) in keys.items():
            insert_api_key(
                conn=conn,
                name=name,
                prefix=key[:12],
                key_sha256=key_digest(key),
                scopes=frozenset(scopes),
                now=utc_now(),
            )
    app = create_app(
        {
            "SETTINGS": Settings(
                database_url=database_url,
                broker_url=BROKER_URL,
                queue_name=QUEUE,
                bulk_max_body_bytes=4 * 1_048_576,  # so that a 413 costs little to provoke
                auth_required=True,
            )
        }
    )
    yield app
    _flush_published()
    app.extensions[EXTENSION].close()


def _flush_published() -> None:
    """Delete what the app published, once its publisher thread has sent the last of it."""
    client = redis.Redis.from_url(BROKER_URL)
    try:
        waiting = [-1]
        while len(waiting) < 25 and waiting[-1] != (now := client.llen(QUEUE)):
            waiting.append(now)
            time.sleep(0.2)
        for key in client.scan_iter(match=f"*{QUEUE}*"):
            client.delete(key)
    except redis.ConnectionError:
        pass  # no broker: nothing was published either
    finally:
        client.close()


@pytest.fixture(scope="module")
def api_schema(app: Flask, feature_spec: FeatureSpec) -> OpenApiSchema:
    # The id's pattern states all of its rule but the unassigned code points (and, past the BMP, the format
    # and private-use ones), which only Python's Unicode tables know: the format's generator draws ids the
    # server takes.
    schemathesis.openapi.format(ID_FORMAT, st.text(min_size=1, max_size=128).filter(valid_observation_id))
    schemathesis.openapi.media_type("text/csv", _csv_uploads(feature_spec))
    schemathesis.openapi.media_type("application/x-ndjson", _ndjson_uploads())
    schemathesis.deserializer("application/x-ndjson")(_read_ndjson)
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.fixture(scope="module")
def seeded(app: Flask) -> Seeded:
    client = authorized(app)
    ids = {state: new_id(f"contract-{state}") for state in ("queued", "done", "failed")}
    for observation_id in ids.values():
        assert client.post("/predict", json=prediction_request(id=observation_id)).status_code == 202
    context = app.extensions[EXTENSION]
    with context.engine.begin() as conn:
        result = PredictionResult(id=ids["done"], proba=0.8, prediction=True)
        # Predicted as a worker would: by the version that accepted it.
        version = context.rollout.default_version
        save_predictions(conn=conn, results=[result], model_version=version, now=utc_now())
        mark_failed(conn=conn, observation_ids=[ids["failed"]], reason="poisoned", now=utc_now())
    batch = {"observations": [prediction_request(id=new_id("contract-batch")), {"id": 7}]}
    receipt = client.post("/batches", json=batch)
    assert receipt.status_code == 202
    return Seeded(**ids, batch=receipt.get_json()["batch_id"])


def _with_seeded_id(case: Case, observation_id: str) -> Case:
    """Point a /update body at a stored observation, unless its id is what the case makes invalid."""
    body = case.body
    claimed = body.get("id") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(claimed, str) and valid_observation_id(claimed):
        case.body = {**body, "id": observation_id}
    return case


def _cases(
    schema: OpenApiSchema, method: str, path: str, mode: GenerationMode, seeded: Seeded
) -> st.SearchStrategy[Case]:
    """Return the cases of one operation: generated ones, and as many aimed at the seeded rows."""
    operation = schema[path][method]
    generated = operation.as_strategy(generation_mode=mode)
    if path == "/predictions/{observation_id}":
        return generated | st.sampled_from(seeded.observations).flatmap(
            lambda i: operation.as_strategy(generation_mode=mode, path_parameters={"observation_id": i})
        )
    if path.startswith("/batches/"):
        return generated | operation.as_strategy(
            generation_mode=mode, path_parameters={"batch_id": seeded.batch}
        )
    if path == "/update":
        return generated | st.tuples(generated, st.sampled_from(seeded.observations)).map(
            lambda pair: _with_seeded_id(*pair)
        )
    if path == "/batches":
        # With atomic=true one item that is not valid refuses the batch (422): a rule on the items that
        # depends on the query, which no schema states (the operation's description does); excluded here,
        # test_an_atomic_batch_* checks it.
        return operation.as_strategy(generation_mode=mode, query={"atomic": "false"})
    return generated


def _url(path: str) -> str:
    return path.format_map(PATH_VALUES)


def _conforms(
    schema: OpenApiSchema, method: str, path: str, response: Any, *, unavailable: bool = False
) -> None:
    """Run the checks on an answer to a request made by hand (the checks on generated data do not apply).

    unavailable: the answer is a 503 on purpose, which not_a_server_error would count as a failure.
    """
    parameters = {name: value for name, value in PATH_VALUES.items() if f"{{{name}}}" in path}
    case = schema[path][method].Case(path_parameters=parameters)
    case.validate_response(response, excluded_checks=[not_a_server_error] if unavailable else None)


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS]
    + [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) in NEGATABLE],
    ids=lambda value: value.value if isinstance(value, GenerationMode) else value,
)
def test_operation_answers_as_documented(
    api_schema: OpenApiSchema, seeded: Seeded, method: str, path: str, mode: GenerationMode
) -> None:
    @given(case=_cases(api_schema, method, path, mode, seeded))
    @FUZZ
    def check(case: Case) -> None:
        # Every built-in check that applies to one call: not_a_server_error, status_code_conformance,
        # content_type_conformance, response_schema_conformance, response_headers_conformance,
        # positive_data_acceptance and negative_data_rejection. A case that carries an Authorization header
        # gets the valid key in it; one that left it out (a negative case) goes without and must be refused.
        has_key = "Authorization" in (case.headers or {})
        case.call_and_validate(headers=AUTH if has_key else None)

    run_past_the_interpreters_ast_bug(check)


def _required_scope(schema: OpenApiSchema, method: str, path: str) -> str:
    scope: str = schema[path][method].definition.raw["x-required-scope"]
    return scope


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_an_operation_answers_as_documented_to_a_key_of_only_its_scope(
    api_schema: OpenApiSchema, seeded: Seeded, method: str, path: str
) -> None:
    key = ONLY[_required_scope(api_schema, method, path)]

    @given(case=_cases(api_schema, method, path, GenerationMode.POSITIVE, seeded))
    @settings(FUZZ, max_examples=10)  # the admin pass above fuzzes the same data: this one checks the scope
    def check(case: Case) -> None:
        response = case.call_and_validate(headers={"Authorization": f"Bearer {key}"})
        # The checks count a 401 or 403 as an answer to valid data: the key must be enough, so neither is.
        assert response.status_code not in (401, 403), response.text

    run_past_the_interpreters_ast_bug(check)


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    ("presented", "status", "challenge"),
    [
        (None, 401, ""),
        ("unknown", 401, 'error="invalid_token"'),
        ("all-but", 403, 'error="insufficient_scope"'),
    ],
    ids=["missing", "unknown", "wrong-scope"],
)
def test_a_guarded_operation_refuses_a_key_as_documented(
    api_schema: OpenApiSchema,
    method: str,
    path: str,
    presented: str | None,
    status: int,
    challenge: str,
) -> None:
    scope = _required_scope(api_schema, method, path)
    key = {None: None, "unknown": new_api_key(), "all-but": ALL_BUT[scope]}[presented]
    parameters = {name: value for name, value in PATH_VALUES.items() if f"{{{name}}}" in path}
    case = api_schema[path][method].Case(path_parameters=parameters)
    response = case.call(headers={"Authorization": f"Bearer {key}"} if key else None)
    assert response.status_code == status
    assert challenge in response.headers["www-authenticate"][0]
    if status == 403:
        assert f'scope="{scope}"' in response.headers["www-authenticate"][0]
    case.validate_response(response)


def test_the_id_pattern_takes_every_id_the_server_takes_and_states_all_but_unassigned_characters(
    api_schema: OpenApiSchema,
) -> None:
    body = api_schema["/update"]["POST"].get_body_for_media_type("application/json")

    assert body is not None

    def documented(observation_id: str) -> bool:
        return bool(body.is_valid({"id": observation_id, "true_class": True}))

    characters = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]
    taken = [c for c in characters if valid_observation_id(c) != documented(c)]
    # The pattern is looser than the server only where Python's Unicode tables are needed: unassigned code
    # points.
    assert {unicodedata.category(c) for c in taken} <= {"Cn"}
    assert all(documented(c) for c in taken)
    for observation_id in (
        "x/../b",
        "..",
        ".",
        "/.",
        "a/./b",
        "./a",
        "a/..",
        "a..b",
        "...",
        ".a/b.",
        "a\x00b",
    ):
        assert documented(observation_id) == valid_observation_id(observation_id), observation_id


# CPython 3.11 can raise "SystemError: AST constructor recursion depth mismatch" from ast.parse
# (python/cpython#106905, seen by others "rarely, in a threaded application"). Hypothesis calls ast.parse to
# describe schemathesis's lambdas the first time it shows one, deep inside a draw; CI met it once, on
# POST /batches, and the same draw replayed at once did not. Such a run is run again, once; any other
# failure fails as it is.
AST_BUG = "AST constructor recursion depth mismatch"


def run_past_the_interpreters_ast_bug(check: Callable[[], None]) -> None:
    try:
        check()
    except Exception as error:  # Hypothesis wraps it in a FlakyFailure (an exception group)
        if not _caused_by_ast_bug(error, seen=set()):
            raise
        check()


def _caused_by_ast_bug(error: BaseException | None, seen: set[int]) -> bool:
    if error is None or id(error) in seen:
        return False
    seen.add(id(error))
    if isinstance(error, SystemError) and AST_BUG in str(error):
        return True
    inner = list(getattr(error, "exceptions", ()))
    return any(_caused_by_ast_bug(e, seen) for e in [*inner, error.__cause__, error.__context__])


def test_the_document_lists_every_route_of_the_api(api_schema: OpenApiSchema, app: Flask) -> None:
    documented = {
        (method.upper(), path) for path, item in api_schema.raw_schema["paths"].items() for method in item
    }
    assert documented == set(OPERATIONS)
    guarded = {
        (method.upper(), path)
        for path, item in api_schema.raw_schema["paths"].items()
        for method, operation in item.items()
        if operation["security"]
    }
    assert guarded == set(GUARDED)
    routes = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and rule.rule not in PAGES
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert routes == set(OPERATIONS)


@pytest.mark.parametrize("state", ["queued", "done", "failed"])
def test_a_stored_observation_answers_as_documented_in_each_state(
    api_schema: OpenApiSchema, seeded: Seeded, state: str
) -> None:
    operation = api_schema["/predictions/{observation_id}"]["GET"]
    observation_id = getattr(seeded, state)
    response = operation.Case(path_parameters={"observation_id": observation_id}).call_and_validate(
        headers=AUTH
    )
    assert response.status_code == 200
    assert response.json()["status"] == state
    assert ("retry-after" in response.headers) == (state == "queued")
    assert ("failure_reason" in response.json()) == (state == "failed")


@pytest.mark.parametrize(("state", "status"), [("queued", 202), ("done", 200), ("failed", 200)])
def test_resending_an_observation_answers_as_documented(
    api_schema: OpenApiSchema, seeded: Seeded, state: str, status: int
) -> None:
    operation = api_schema["/predict"]["POST"]
    resent = operation.Case(body=prediction_request(id=getattr(seeded, state))).call_and_validate(
        headers=AUTH
    )
    assert resent.status_code == status
    assert resent.json()["status"] == state


def test_resending_an_id_with_another_observation_is_a_documented_409(
    api_schema: OpenApiSchema, seeded: Seeded
) -> None:
    operation = api_schema["/predict"]["POST"]
    conflict = operation.Case(body=prediction_request(id=seeded.done, SubjectAge=99)).call_and_validate(
        headers=AUTH
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["links"] == {"existing": f"/predictions/{seeded.done}"}


@pytest.mark.parametrize("outcome", [True, False, 0, 1, 2, -1, "1", "true", None, [1]], ids=repr)
def test_update_takes_exactly_the_outcomes_the_document_allows(
    api_schema: OpenApiSchema, seeded: Seeded, outcome: Any
) -> None:
    # Not 1.0: JSON Schema counts it an integer equal to 1, the server wants it written as 1 (so described).
    operation = api_schema["/update"]["POST"]
    body = {"id": seeded.done, "true_class": outcome}
    declared = operation.get_body_for_media_type("application/json")
    assert declared is not None
    documented = declared.is_valid(body)
    response = operation.Case(body=body).call_and_validate(headers=AUTH)
    assert (response.status_code == 200) == documented
    assert documented == (outcome in (True, False) or (type(outcome) is int and outcome in (0, 1)))


@pytest.mark.parametrize("path", ["/predict", "/update", "/batches"])
@pytest.mark.parametrize(
    ("headers", "data", "status"),
    [
        ({"Content-Type": "application/json"}, b"{", 400),
        ({"Content-Type": "application/json"}, b"  ", 400),
        ({"Content-Type": "application/json"}, None, 413),
        ({"Content-Type": "application/xml"}, b"<id/>", 415),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"\x1f\x8b", 415),
    ],
    ids=["malformed", "empty", "too-large", "wrong-type", "compressed"],
)
def test_a_refused_body_gets_a_documented_error(
    api_schema: OpenApiSchema, app: Flask, path: str, headers: dict[str, str], data: bytes | None, status: int
) -> None:
    settings_ = app.extensions[EXTENSION].settings
    limit = settings_.bulk_max_body_bytes if path == "/batches" else settings_.max_body_bytes
    response = authorized(app).post(path, headers=headers, data=b" " * (limit + 1) if data is None else data)
    gc.collect()  # an upload copy left open would warn here, and filterwarnings makes that an error
    assert response.status_code == status
    _conforms(api_schema, "POST", path, response)


def test_an_unknown_path_is_a_404_envelope(api_schema: OpenApiSchema, app: Flask) -> None:
    response = authorized(app).get("/no/such/path")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert set(response.get_json()["error"]) == {"code", "message", "request_id"}


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_a_method_a_path_lacks_is_a_405_envelope_naming_its_methods(
    api_schema: OpenApiSchema, app: Flask, method: str, path: str
) -> None:
    url = _url(path)
    documented = {name.upper() for name in api_schema.raw_schema["paths"][path]}
    other = next(name for name in ("DELETE", "PUT", "PATCH") if name not in documented)
    response = authorized(app).open(url, method=other)
    assert response.status_code == 405
    implicit = {"OPTIONS", "HEAD"} if "GET" in documented else {"OPTIONS"}
    assert set(response.headers["Allow"].split(", ")) == documented | implicit
    assert response.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(("atomic", "status"), [("true", 422), ("false", 202), ("maybe", 422)])
def test_an_atomic_batch_with_an_invalid_item_is_refused_whole(
    api_schema: OpenApiSchema, atomic: str, status: int
) -> None:
    operation = api_schema["/batches"]["POST"]
    body: dict[str, Any] = {"observations": [prediction_request(id=new_id("contract-atomic")), {"id": "x"}]}
    case = operation.Case(body=body, query={"atomic": atomic}, media_type="application/json")
    response = case.call_and_validate(headers=AUTH)
    assert response.status_code == status


@pytest.mark.parametrize(
    ("query", "headers", "content_type"),
    [
        ({}, {}, "application/x-ndjson"),
        ({"format": "csv"}, {}, "text/csv; charset=utf-8"),
        ({}, {"Accept": "text/csv"}, "text/csv; charset=utf-8"),
    ],
)
def test_batch_results_download_as_documented(
    api_schema: OpenApiSchema,
    seeded: Seeded,
    query: dict[str, str],
    headers: dict[str, str],
    content_type: str,
) -> None:
    operation = api_schema["/batches/{batch_id}/results"]["GET"]
    case = operation.Case(path_parameters={"batch_id": seeded.batch}, query=query)
    response = case.call_and_validate(headers={**AUTH, **headers})
    assert response.headers["content-type"] == [content_type]
    if content_type.startswith("text/csv"):
        # No schema reads CSV: its columns are checked to be the documented BatchResult's.
        documented = api_schema.raw_schema["components"]["schemas"]["BatchResult"]["properties"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 1
        assert list(rows[0]) == list(documented)


def test_a_batch_number_beyond_64_bits_is_not_a_server_error(api_schema: OpenApiSchema) -> None:
    operation = api_schema["/batches"]["POST"]
    body: dict[str, Any] = {
        "observations": [{"id": new_id("contract-big"), "observation": {"SubjectAge": 2**64}}]
    }
    response = operation.Case(body=body, media_type="application/json").call_and_validate(headers=AUTH)
    assert response.status_code == 202


@pytest.fixture(scope="module")
def unreachable_database(app: Flask, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    folder = tmp_path_factory.mktemp("gone") / "missing"  # SQLite cannot create a file in a missing folder
    update = {"database_url": f"sqlite:///{folder / 'gateway.db'}", "backlog_check_s": 60}
    broken = create_app({"SETTINGS": app.extensions[EXTENSION].settings.model_copy(update=update)})
    yield broken
    broken.extensions[EXTENSION].close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict", prediction_request()),
        ("GET", "/predictions/{observation_id}", None),
        ("POST", "/update", {"id": "some-id", "true_class": True}),
        ("GET", "/batches/{batch_id}", None),
        ("GET", "/ready", None),
        ("GET", "/performance", None),
    ],
)
def test_an_unreachable_database_is_a_documented_503(
    api_schema: OpenApiSchema, unreachable_database: Flask, method: str, path: str, body: Any
) -> None:
    response = authorized(unreachable_database).open(_url(path), method=method, json=body)
    assert response.status_code == 503
    _conforms(api_schema, method, path, response, unavailable=True)


def test_a_submission_shed_for_the_backlog_is_a_documented_503(
    api_schema: OpenApiSchema, app: Flask, seeded: Seeded
) -> None:
    # The seeded rows leave two observations queued: over a bound of one.
    settings_ = app.extensions[EXTENSION].settings.model_copy(
        update={"backlog_max_queued": 1, "backlog_check_s": 60}
    )
    shedding = create_app({"SETTINGS": settings_})
    response = authorized(shedding).post("/predict", json=prediction_request())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    _conforms(api_schema, "POST", "/predict", response, unavailable=True)
    shedding.extensions[EXTENSION].close()
