"""A new model under load, without downtime: canary at 50 %, promote, back to the old version; a shadow.

Each backend gets a stack of its own, its artifacts directory holding the committed bundle (stable) and a
candidate copied from it whose spec also accepts ages up to 120. Nothing restarts; no request is refused;
every accepted observation is predicted once, by the version that accepted it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import sqlalchemy as sa

from admin.reassignment import reassign_rows
from core.feature_spec import PIPELINE_FILE, current_version
from core.rollout.admin import RolloutPlace
from core.rollout.state import Rollout, canary_bucket, version_for
from core.storage.observations import find_prediction
from core.storage.records import PredictionRecord, utc_now
from core.storage.tables import shadow_predictions
from devstack.backends import embedded_backend, postgres_backend
from devstack.stack import ServiceStack, wait_until
from tests.bundles import add_version, change_spec_column, flip_one_byte, scratch_artifacts
from tests.factories import new_id, prediction_request
from training.data import build_training_table
from training.train import SEED

CANDIDATE = "2026.12.01"
BROKEN = "2026.12.03"  # a candidate whose pipeline file changes after the canary call accepted it
SHADOW = "2026.12.05"  # the committed pipeline with a lower threshold, predicting beside the stable one
SHADOW_THRESHOLD = 0.2
SHARE = 50
CHECK_S = 1.0  # ROLLOUT_CHECK_S of the stack: gateways follow a change within it
SETTLE_S = 3.0  # load kept running after each change: the change, and then traffic on it


@pytest.fixture(scope="module", params=["postgres", "embedded"])
def rolling(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, starts_servers: None
) -> Iterator[ServiceStack]:
    """A stack of its own on two bundle versions, the committed one serving."""
    work_dir = tmp_path_factory.mktemp(f"rollout-{request.param}")
    artifacts = scratch_artifacts(work_dir / "artifacts")
    change_spec_column(add_version(artifacts, CANDIDATE), "SubjectAge", maximum=120)
    backend = postgres_backend() if request.param == "postgres" else embedded_backend(work_dir)
    stack = ServiceStack(backend, work_dir)
    stack.env["ARTIFACTS_DIR"] = str(artifacts)
    stack.env["ROLLOUT_CHECK_S"] = str(CHECK_S)
    stack.env["BUNDLE_RETRY_S"] = "2"
    try:
        stack.start_all()
        yield stack
    finally:
        stack.close()
        backend.close()


class SteadyLoad:
    """Submit observations one after another from a thread; keep what was accepted and what was not."""

    def __init__(self, stack: ServiceStack) -> None:
        self.stack = stack
        self.accepted: list[tuple[str, datetime]] = []
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load")

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                body, sent_at = prediction_request(), utc_now()
                try:
                    answer = session.post(self.stack.url("/predict"), json=body, timeout=10)
                except requests.RequestException as exc:
                    self.refused.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code == 202:
                    self.accepted.append((body["id"], sent_at))
                else:
                    self.refused.append(f"{answer.status_code}: {answer.text[:200]}")


def change(stack: ServiceStack, action: str, **body: Any) -> requests.Response:
    return requests.post(stack.url(f"/models/{action}"), json=body or None, timeout=30)


def process_ids(stack: ServiceStack) -> set[int]:
    """Return the ids of every process of the stack: gateway and its workers, worker and its pool, redrive."""
    ids: set[int] = set()
    for process in stack.processes.values():
        parent = psutil.Process(process.pid)
        ids |= {parent.pid, *(child.pid for child in parent.children(recursive=True))}
    return ids


def pool_memory_mb(stack: ServiceStack) -> dict[str, float]:
    """Return RSS, PSS and USS of the worker node's pool process, in MiB."""
    (pool,) = psutil.Process(stack.processes["worker"].pid).children(recursive=True)
    memory = pool.memory_full_info()
    return {name: round(getattr(memory, name) / 2**20, 1) for name in ("rss", "pss", "uss")}


def records(stack: ServiceStack, ids: list[str]) -> dict[str, PredictionRecord]:
    with stack.engine.connect() as conn:
        found = {i: find_prediction(conn=conn, observation_id=i) for i in ids}
    return {i: r for i, r in found.items() if r is not None}


def first_predicted_by(stack: ServiceStack, ids: list[str], version: str) -> datetime | None:
    done = [
        r.predicted_at for r in records(stack, ids).values() if r.model_version == version and r.predicted_at
    ]
    return min(done) if done else None


def submit_batch(stack: ServiceStack, rows: int) -> tuple[str, list[str]]:
    items = [prediction_request() for _ in range(rows)]
    receipt = requests.post(stack.url("/batches"), json={"observations": items}, timeout=30)
    assert receipt.status_code == 202 and receipt.json()["accepted"] == rows, receipt.text
    return receipt.json()["batch_id"], [item["id"] for item in items]


def test_canary_promote_and_back_under_load_refuse_nothing_and_predict_each_row_once_by_its_version(
    rolling: ServiceStack,
) -> None:
    stack = rolling
    stable = current_version(Path(stack.env["ARTIFACTS_DIR"]))
    before = process_ids(stack)
    memory = {"one bundle": pool_memory_mb(stack)}
    batches: list[tuple[str, str, list[str]]] = []  # batch id, the version it must have, its ids
    canary = Rollout(stable, CANDIDATE, SHARE)

    with SteadyLoad(stack) as load:
        wait_until(lambda: len(load.accepted) >= 50, timeout=30)
        canary_called = utc_now()
        assert change(stack, "canary", version=CANDIDATE, percent=SHARE).status_code == 200
        time.sleep(CHECK_S + 0.5)
        # An age only the candidate's spec takes, on an id the canary takes: accepted, predicted by it.
        older = prediction_request(id=_id_in_buckets(below=SHARE), SubjectAge=110)
        assert requests.post(stack.url("/predict"), json=older, timeout=10).status_code == 202
        for _ in range(4):
            batch_id, ids = submit_batch(stack, 40)
            batches.append((batch_id, version_for(batch_id, canary), ids))
        time.sleep(SETTLE_S)
        memory["two bundles"] = pool_memory_mb(stack)

        promote_called = utc_now()
        assert change(stack, "promote").status_code == 200
        time.sleep(CHECK_S + 0.5)
        batch_id, ids = submit_batch(stack, 40)
        batches.append((batch_id, CANDIDATE, ids))
        time.sleep(SETTLE_S)

        nothing_to_drop = change(stack, "rollback")
        assert nothing_to_drop.status_code == 409  # rollback drops a canary; back from a promotion: stable
        back_called = utc_now()
        assert change(stack, "stable", version=stable).status_code == 200
        time.sleep(CHECK_S + 0.5)
        batch_id, ids = submit_batch(stack, 40)
        batches.append((batch_id, stable, ids))
        time.sleep(SETTLE_S)

    assert load.refused == []
    singles = [i for i, _ in load.accepted] + [older["id"]]
    every_id = singles + [i for _, _, ids in batches for i in ids]
    wait_until(
        lambda: all(r.status == "done" for r in records(stack, every_id).values()), timeout=120, interval=0.5
    )
    stored = records(stack, every_id)
    assert set(stored) == set(every_id)
    assert {(r.status, r.attempts) for r in stored.values()} == {("done", 1)}
    assert all(r.model_version == r.accepted_version for r in stored.values())
    accepted_by = {r.accepted_version for r in stored.values()}
    assert accepted_by == {stable, CANDIDATE}
    assert stored[older["id"]].model_version == CANDIDATE
    for batch_id, version, ids in batches:
        assert {stored[i].accepted_version for i in ids} == {version}, batch_id
    assert process_ids(stack) == before  # no process restarted, none added

    # Ids the promotion moved: on the old version's buckets, submitted after the promote call.
    moved = [i for i, at in load.accepted if at >= promote_called and canary_bucket(i) >= SHARE]
    first_moved = first_predicted_by(stack, moved, CANDIDATE)
    first_canary = first_predicted_by(stack, singles, CANDIDATE)
    assert first_moved is not None and first_canary is not None
    print(  # the figures the issue asks for; run with -s to see them
        f"\n[{stack.backend.name}] canary call -> first prediction by {CANDIDATE} (loaded on first use): "
        f"{(first_canary - canary_called).total_seconds():.2f} s; promote call -> first prediction by it of "
        f"an id the promotion moved: {(first_moved - promote_called).total_seconds():.2f} s; "
        f"back to {stable} at +{(back_called - promote_called).total_seconds():.1f} s; "
        f"{len(load.accepted)} single submissions, {len(batches)} batches; worker pool process MiB: {memory}"
    )


def test_a_canary_whose_bundle_breaks_leaves_its_rows_queued_until_it_loads_while_the_stable_serves(
    rolling: ServiceStack,
) -> None:
    stack = rolling
    artifacts = Path(stack.env["ARTIFACTS_DIR"])
    add_version(artifacts, BROKEN)
    assert change(stack, "canary", version=BROKEN, percent=SHARE).status_code == 200
    original = flip_one_byte(artifacts / BROKEN / PIPELINE_FILE)  # checked by the call; no worker loaded it
    try:
        time.sleep(CHECK_S + 0.5)
        bodies = [prediction_request() for _ in range(30)]
        for body in bodies:
            assert requests.post(stack.url("/predict"), json=body, timeout=10).status_code == 202
        on_broken = [b["id"] for b in bodies if canary_bucket(b["id"]) < SHARE]
        on_stable = [b["id"] for b in bodies if canary_bucket(b["id"]) >= SHARE]
        assert on_broken and on_stable

        def stable_done() -> bool:
            return all(r.status == "done" for r in records(stack, on_stable).values())

        wait_until(stable_done, timeout=30, interval=0.2)
        time.sleep(5)  # past REDRIVE_AFTER_S and BUNDLE_RETRY_S: published again, refused again
        waiting = records(stack, on_broken).values()
        assert {(r.status, r.attempts, r.failure_reason) for r in waiting} == {("queued", 0, None)}
        assert requests.get(stack.url("/ready"), timeout=10).status_code == 200  # the stable one serves
        models = requests.get(stack.url("/models"), timeout=10).json()
        assert "checksum" in {b["version"]: b["problem"] for b in models["versions"]}[BROKEN]
        assert "model version unavailable; its rows stay queued" in stack.log_tail("worker", 2000)
    finally:
        (artifacts / BROKEN / PIPELINE_FILE).write_bytes(original)

    # Put right: the redrive publishes them again and the worker loads the bundle once its back-off is over.
    def broken_done() -> bool:
        return all(r.status == "done" for r in records(stack, on_broken).values())

    wait_until(broken_done, timeout=60, interval=0.5)
    assert {(r.attempts, r.model_version) for r in records(stack, on_broken).values()} == {(1, BROKEN)}
    assert change(stack, "rollback").status_code == 200


def _id_in_buckets(*, below: int) -> str:
    while canary_bucket(candidate := new_id("older")) >= below:
        pass
    return candidate


def test_a_shadow_predicts_every_row_beside_the_stable_serves_none_and_is_compared_on_monitoring(
    rolling: ServiceStack,
) -> None:
    stack = rolling
    before = process_ids(stack)
    stable = requests.get(stack.url("/models"), timeout=10).json()["rollout"]["stable_version"]
    # The same pipeline with a lower threshold: the same probabilities, more positive calls.
    add_version(Path(stack.env["ARTIFACTS_DIR"]), SHADOW, threshold=SHADOW_THRESHOLD)
    assert change(stack, "shadow", version=SHADOW).status_code == 200
    time.sleep(CHECK_S + 0.5)

    bodies: list[dict[str, Any]] = [{"id": new_id("stop"), "observation": stop} for stop in real_stops(100)]
    for body in bodies[:60]:
        assert requests.post(stack.url("/predict"), json=body, timeout=10).status_code == 202
    receipt = requests.post(stack.url("/batches"), json={"observations": bodies[60:]}, timeout=30)
    assert receipt.status_code == 202 and receipt.json()["accepted"] == 40, receipt.text
    ids = [body["id"] for body in bodies]
    wait_until(
        lambda: all(r.status == "done" for r in records(stack, ids).values()), timeout=60, interval=0.2
    )
    wait_until(lambda: len(shadow_rows(stack, ids)) == len(ids), timeout=30, interval=0.2)

    served, shadowed = records(stack, ids), shadow_rows(stack, ids)
    assert {(r.model_version, r.accepted_version) for r in served.values()} == {(stable, stable)}
    for observation_id, (version, proba, prediction) in shadowed.items():
        assert version == SHADOW
        assert proba == pytest.approx(served[observation_id].proba)
        assert prediction is (proba >= SHADOW_THRESHOLD)
    agreeing = sum(shadowed[i][2] == served[i].prediction for i in ids)
    assert agreeing < len(ids)  # the lower threshold calls some stops the stable version does not

    labelled = ids[:30]
    for observation_id in labelled:
        answer = requests.post(
            stack.url("/update"), json={"id": observation_id, "true_class": True}, timeout=10
        )
        assert answer.status_code == 200
    shadow = requests.get(stack.url("/monitoring"), timeout=30).json()["shadow"][SHADOW]
    assert shadow["predictions"] >= len(ids)  # every row this test sent, and any others in the window
    quality = shadow["quality"]["all"]
    assert quality["labelled"] == len(labelled)
    assert quality["true_positive"] == sum(shadowed[i][2] for i in labelled)

    stopped = requests.delete(stack.url("/models/shadow"), timeout=30)
    assert stopped.status_code == 200 and stopped.json()["rollout"]["shadow_version"] is None
    time.sleep(CHECK_S + 0.5)
    later = [prediction_request() for _ in range(10)]
    for body in later:
        assert requests.post(stack.url("/predict"), json=body, timeout=10).status_code == 202
    later_ids = [body["id"] for body in later]
    wait_until(lambda: all(r.status == "done" for r in records(stack, later_ids).values()), timeout=60)
    assert shadow_rows(stack, later_ids) == {}
    assert process_ids(stack) == before  # no process restarted, none added


def real_stops(count: int) -> list[dict[str, Any]]:
    """Return the first stops of the training table as a client sends them: a spread of probabilities."""
    features, _, _ = build_training_table(seed=SEED)
    stops: list[dict[str, Any]] = features.head(count).to_dict("records")  # type: ignore[assignment]
    return stops


def shadow_rows(stack: ServiceStack, ids: list[str]) -> dict[str, tuple[str, float, bool]]:
    """Return id -> (version, proba, call) of the shadow predictions stored for these ids."""
    with stack.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                shadow_predictions.c.id,
                shadow_predictions.c.model_version,
                shadow_predictions.c.proba,
                shadow_predictions.c.prediction,
            ).where(shadow_predictions.c.id.in_(ids))
        )
        return {row.id: (row.model_version, row.proba, row.prediction) for row in rows}


def test_rows_of_a_canary_that_cannot_load_are_predicted_by_the_stable_once_reassigned(
    rolling: ServiceStack,
) -> None:
    stack = rolling
    artifacts = Path(stack.env["ARTIFACTS_DIR"])
    withdrawn = "2026.12.04"
    add_version(artifacts, withdrawn)
    assert change(stack, "canary", version=withdrawn, percent=SHARE).status_code == 200
    flip_one_byte(artifacts / withdrawn / PIPELINE_FILE)  # broken for good: nobody restores it
    time.sleep(CHECK_S + 0.5)
    bodies = [prediction_request() for _ in range(20)]
    for body in bodies:
        assert requests.post(stack.url("/predict"), json=body, timeout=10).status_code == 202
    stranded = [b["id"] for b in bodies if canary_bucket(b["id"]) < SHARE]
    assert stranded
    wait_until(lambda: "model version unavailable" in stack.log_tail("worker", 2000), timeout=30)
    assert change(stack, "rollback").status_code == 200
    stable = requests.get(stack.url("/models"), timeout=10).json()["rollout"]["stable_version"]

    place = RolloutPlace(artifacts_dir=artifacts, default_version=current_version(artifacts), pinned={})
    done = reassign_rows(engine=stack.engine, place=place, from_version=withdrawn)

    assert (done.to_version, done.moved, done.failed) == (stable, len(stranded), 0)
    # The redrive publishes them again, now naming the stable version; the stale copies naming the broken
    # one write nothing.
    wait_until(lambda: all(r.status == "done" for r in records(stack, stranded).values()), timeout=60)
    assert {(r.model_version, r.accepted_version, r.attempts) for r in records(stack, stranded).values()} == {
        (stable, stable, 1)
    }
