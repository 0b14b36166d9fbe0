"""Model rollout: the transitions, the per-id canary draw, and the stored state with its audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from core.rollout.state import (
    CANARY,
    PROMOTE,
    ROLLBACK,
    SET,
    SHADOW,
    Rollout,
    RolloutError,
    canary_bucket,
    promote,
    rollback,
    set_stable,
    start_canary,
    start_shadow,
    stop_shadow,
    version_for,
)
from core.storage.engine import make_engine
from core.storage.migrate import MIGRATIONS_DIR, upgrade_to_head
from core.storage.observations import find_prediction
from core.storage.records import PredictionResult, as_utc
from core.storage.rollouts import read_rollout, rollout_history, write_rollout
from core.storage.shadow import purge_shadow_predictions, save_shadow_predictions
from core.storage.tables import model_rollout, predictions, shadow_predictions
from devstack.backends import _fresh_postgres_database

IDS = [str(uuid.uuid4()) for _ in range(20_000)]
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def share_on_canary(rollout: Rollout, ids: list[str]) -> float:
    """Return the percentage of ids that version_for sends to the canary."""
    return 100 * sum(version_for(i, rollout) == rollout.canary_version for i in ids) / len(ids)


# --- transitions -----------------------------------------------------------------------------------------


def test_canary_at_ten_percent_then_promote_then_rollback_is_refused() -> None:
    serving = set_stable(None, "v1")
    assert serving == Rollout(stable_version="v1", canary_version=None, canary_percent=0)

    serving = start_canary(serving, "v2", 10)
    assert serving == Rollout(stable_version="v1", canary_version="v2", canary_percent=10)

    serving = promote(serving)
    assert serving == Rollout(stable_version="v2", canary_version=None, canary_percent=0)

    with pytest.raises(RolloutError, match="no canary to roll back: 'v2' serves every id"):
        rollback(serving)


def test_rollback_drops_the_canary_and_keeps_the_stable_version() -> None:
    canary = start_canary(Rollout("v1"), "v2", 30)
    assert rollback(canary) == Rollout("v1")


def test_the_running_canary_may_ramp_its_share_but_another_canary_is_refused() -> None:
    canary = start_canary(Rollout("v1"), "v2", 10)
    assert start_canary(canary, "v2", 50) == Rollout("v1", "v2", 50)
    with pytest.raises(RolloutError, match="canary 'v2' is running: promote it or roll it back"):
        start_canary(canary, "v3", 10)


def test_nothing_to_start_promote_or_roll_back_before_a_stable_version_is_set() -> None:
    with pytest.raises(RolloutError, match="no stable version is set yet"):
        start_canary(None, "v2", 10)
    with pytest.raises(RolloutError, match="no canary to promote"):
        promote(None)
    with pytest.raises(RolloutError, match="no canary to roll back: nothing serves"):
        rollback(None)
    with pytest.raises(RolloutError, match="no canary to promote"):
        promote(Rollout("v1"))


def test_setting_the_stable_version_serves_it_everywhere_and_drops_a_running_canary() -> None:
    assert set_stable(start_canary(Rollout("v1"), "v2", 40), "v3") == Rollout("v3")


def test_a_canary_of_the_stable_version_itself_is_refused() -> None:
    with pytest.raises(RolloutError, match="'v1' is already the stable one"):
        start_canary(Rollout("v1"), "v1", 10)


@pytest.mark.parametrize(
    ("stable", "canary", "percent", "message"),
    [
        ("v1", "v2", -1, "outside 0..100"),
        ("v1", "v2", 101, "outside 0..100"),
        ("v1", "v2", True, "not a whole number"),
        ("v1", "v2", 10.0, "not a whole number"),
        ("v1", None, 10, "needs a canary version"),
        ("v1", "v1", 0, "already the stable one"),
        ("", None, 0, "stable version '' refused"),
        ("../v1", None, 0, "stable version '../v1' refused"),
        ("v" * 65, None, 0, "stable version 'vvv"),
        ("v1", "v2/../../etc", 5, "canary version 'v2/../../etc' refused"),
    ],
)
def test_invalid_rollouts_are_refused(stable: str, canary: str | None, percent: int, message: str) -> None:
    with pytest.raises(RolloutError, match=message.replace(".", r"\.")):
        Rollout(stable_version=stable, canary_version=canary, canary_percent=percent)


def test_a_staged_canary_at_zero_percent_is_a_valid_rollout() -> None:
    assert Rollout("v1", "v2", 0).canary_version == "v2"


# --- which version serves an id ----------------------------------------------------------------------------


def test_a_shadow_serves_nothing_and_survives_the_changes_of_what_serves() -> None:
    shadowed = start_shadow(Rollout("v1"), "v3")
    assert shadowed == Rollout("v1", shadow_version="v3")
    assert {version_for(i, shadowed) for i in IDS[:1000]} == {"v1"}
    ramped = start_canary(shadowed, "v2", 10)
    assert ramped.shadow_version == "v3"
    assert promote(ramped) == Rollout("v2", shadow_version="v3")
    assert rollback(ramped) == Rollout("v1", shadow_version="v3")
    assert set_stable(ramped, "v4") == Rollout("v4", shadow_version="v3")
    assert stop_shadow(shadowed) == Rollout("v1")


def test_a_shadow_that_comes_to_serve_stops_being_a_shadow() -> None:
    shadowed = start_shadow(Rollout("v1"), "v2")
    assert start_canary(shadowed, "v2", 10) == Rollout("v1", "v2", 10)
    assert set_stable(shadowed, "v2") == Rollout("v2")


def test_a_shadow_of_a_serving_version_or_before_any_is_refused_and_so_is_stopping_none() -> None:
    with pytest.raises(RolloutError, match="already serves"):
        start_shadow(Rollout("v1"), "v1")
    with pytest.raises(RolloutError, match="already serves"):
        start_shadow(Rollout("v1", "v2", 10), "v2")
    with pytest.raises(RolloutError, match="no stable version"):
        start_shadow(None, "v2")
    with pytest.raises(RolloutError, match="no shadow"):
        stop_shadow(Rollout("v1"))


def test_an_id_lands_in_the_same_bucket_on_every_process() -> None:
    # Pinned values: a bucket drawn from Python's per-process salted hash() would not repeat these.
    assert [canary_bucket(i) for i in ("obs-1", "obs-2", "stop-2026-0001")] == [49, 86, 67]
    rollout = Rollout("v1", "v2", 10)
    assert all(version_for(i, rollout) == version_for(i, rollout) for i in IDS[:1000])


def test_over_twenty_thousand_ids_a_ten_percent_canary_takes_ten_percent() -> None:
    assert share_on_canary(Rollout("v1", "v2", 10), IDS) == pytest.approx(10, abs=1.5)


@pytest.mark.parametrize("percent", [1, 25, 50, 90])
def test_every_share_is_honoured_over_many_ids(percent: int) -> None:
    assert share_on_canary(Rollout("v1", "v2", percent), IDS) == pytest.approx(percent, abs=1.5)


def test_zero_percent_never_and_a_hundred_percent_always_picks_the_canary() -> None:
    assert {version_for(i, Rollout("v1", "v2", 0)) for i in IDS} == {"v1"}
    assert {version_for(i, Rollout("v1", "v2", 100)) for i in IDS} == {"v2"}
    assert {version_for(i, Rollout("v1")) for i in IDS} == {"v1"}


def test_raising_the_share_only_moves_ids_from_stable_to_canary() -> None:
    at_10 = {i for i in IDS if version_for(i, Rollout("v1", "v2", 10)) == "v2"}
    at_30 = {i for i in IDS if version_for(i, Rollout("v1", "v2", 30)) == "v2"}
    assert at_10 and at_10 < at_30


# --- stored state, on SQLite and Postgres ------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet: a SQLite file in tmp_path, or a fresh database on the local Postgres."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollout.db'}"
        return
    url, drop = _fresh_postgres_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def engine(blank_database_url: str) -> Iterator[Engine]:
    upgrade_to_head(blank_database_url)
    engine = make_engine(blank_database_url)
    yield engine
    engine.dispose()


def migrate(database_url: str, revision: str, *, down: bool = False) -> None:
    """Move the schema to one revision, as core.storage.migrate does for the head."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    (command.downgrade if down else command.upgrade)(config, revision)


def test_no_rollout_is_stored_before_the_first_setting(engine: Engine) -> None:
    with engine.connect() as conn:
        assert read_rollout(conn=conn) is None
        assert rollout_history(conn=conn, limit=10) == []


def test_each_change_is_stored_and_recorded_in_order(engine: Engine) -> None:
    steps: list[tuple[str, str | None, Callable[[Rollout | None], Rollout]]] = [
        (SET, "ops", lambda current: set_stable(current, "v1")),
        (CANARY, "ops", lambda current: start_canary(current, "v2", 10)),
        (CANARY, "alice", lambda current: start_canary(current, "v2", 50)),
        (PROMOTE, None, promote),
        (CANARY, "alice", lambda current: start_canary(current, "v3", 5)),
        (ROLLBACK, "bob", rollback),
    ]
    expected = []
    for minute, (action, by, transition) in enumerate(steps):
        with engine.begin() as conn:
            changed = transition(read_rollout(conn=conn, for_update=True))
            now = T0 + timedelta(minutes=minute)
            write_rollout(conn=conn, rollout=changed, action=action, by=by, now=now)
        with engine.connect() as conn:
            assert read_rollout(conn=conn) == changed
        expected.append((now, action, changed, by))

    with engine.connect() as conn:
        history = rollout_history(conn=conn, limit=100)
        latest_two = rollout_history(conn=conn, limit=2)
        row = conn.execute(sa.select(model_rollout)).one()
    assert [(e.at, e.action, e.rollout, e.by) for e in history] == expected[::-1]
    assert latest_two == history[:2]
    assert history[0].rollout == Rollout("v2"), "rolled back to the promoted version"
    assert (row.id, row.updated_by) == (1, "bob")
    assert as_utc(row.updated_at) == T0 + timedelta(minutes=5)


def test_a_change_whose_transaction_fails_leaves_neither_row_nor_event(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="after the write"), engine.begin() as conn:
        write_rollout(conn=conn, rollout=Rollout("v1"), action=SET, by="ops", now=T0)
        raise RuntimeError("something failed after the write")
    with engine.connect() as conn:
        assert read_rollout(conn=conn) is None
        assert rollout_history(conn=conn, limit=10) == []


def test_an_unknown_action_is_refused_and_nothing_is_written(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(RolloutError, match="'deploy' is not one of canary"):
        write_rollout(conn=conn, rollout=Rollout("v1"), action="deploy", by="ops", now=T0)
    with engine.connect() as conn:
        assert read_rollout(conn=conn) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("canary_percent", 101),
        ("canary_percent", -5),
        ("canary_version", None),
        ("canary_version", "v1"),
        ("shadow_version", "v1"),
        ("shadow_version", "v2"),
    ],
)
def test_the_database_itself_refuses_a_rollout_that_is_not_valid(
    engine: Engine, field: str, value: object
) -> None:
    forged = Rollout("v1", "v2", 10)
    object.__setattr__(forged, field, value)  # what validation would refuse, as a hand-written row might be
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        write_rollout(conn=conn, rollout=forged, action=CANARY, by="ops", now=T0)


def test_the_shadow_is_stored_and_recorded_with_its_change(engine: Engine) -> None:
    with engine.begin() as conn:
        write_rollout(conn=conn, rollout=Rollout("v1", shadow_version="v2"), action=SHADOW, by="ops", now=T0)
    with engine.connect() as conn:
        assert read_rollout(conn=conn) == Rollout("v1", shadow_version="v2")
        [event] = rollout_history(conn=conn, limit=5)
    assert (event.action, event.rollout.shadow_version) == (SHADOW, "v2")


def test_reading_for_update_holds_off_a_second_change_until_the_first_commits(engine: Engine) -> None:
    with engine.begin() as conn:
        write_rollout(conn=conn, rollout=Rollout("v1"), action=SET, by="ops", now=T0)
    with engine.begin() as first:
        assert read_rollout(conn=first, for_update=True) == Rollout("v1")
        with engine.connect() as second:
            # Give up waiting after 200 ms instead of the engine's usual patience.
            if engine.dialect.name == "postgresql":
                second.execute(sa.text("SET lock_timeout = '200ms'"))
            else:
                second.exec_driver_sql("PRAGMA busy_timeout = 200")
            second.commit()
            with pytest.raises(sa.exc.OperationalError, match=r"lock timeout|database is locked"):
                read_rollout(conn=second, for_update=True)
            second.rollback()
            assert read_rollout(conn=second) == Rollout("v1"), "a plain read does not wait"
        write_rollout(conn=first, rollout=Rollout("v2"), action=SET, by="ops", now=T0)
    with engine.begin() as conn:
        assert read_rollout(conn=conn, for_update=True) == Rollout("v2"), "free again once committed"


def test_rows_stored_before_the_migration_have_no_accepted_version(blank_database_url: str) -> None:
    migrate(blank_database_url, "0008")
    engine = make_engine(blank_database_url)
    try:
        with engine.begin() as conn:
            # As the code of that revision wrote it: without the column, which today's insert_queued sets.
            conn.execute(
                predictions.insert().values(
                    id="before", observation={"hour": 0}, status="queued", attempts=0, received_at=T0,
                    published_at=T0,
                )
            )  # fmt: skip
        migrate(blank_database_url, "head")
        with engine.begin() as conn:
            stored = conn.execute(sa.select(predictions.c.id, predictions.c.accepted_version)).all()
            write_rollout(conn=conn, rollout=Rollout("v1"), action=SET, by=None, now=T0)
        assert [tuple(row) for row in stored] == [("before", None)]
        migrate(blank_database_url, "0008", down=True)
        migrate(blank_database_url, "head")
        with engine.connect() as conn:
            assert read_rollout(conn=conn) is None, "the downgrade dropped the rollout tables"
            assert find_prediction(conn=conn, observation_id="before") is not None
    finally:
        engine.dispose()


def test_shadow_predictions_keep_their_first_result_and_go_by_their_own_age(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        old = [PredictionResult(id="old", proba=0.3, prediction=True)]
        save_shadow_predictions(conn=conn, results=old, model_version="v2", now=now - timedelta(days=3))
        recent = [PredictionResult(id="recent", proba=0.1, prediction=False)]
        save_shadow_predictions(conn=conn, results=recent, model_version="v2", now=now)
        again = [PredictionResult(id="recent", proba=0.9, prediction=True)]  # a redelivered message
        save_shadow_predictions(conn=conn, results=again, model_version="v2", now=now)
    with engine.begin() as conn:
        purged = purge_shadow_predictions(conn=conn, older_than_s=2 * 86_400, limit=10)
    with engine.connect() as conn:
        kept = conn.execute(sa.select(shadow_predictions.c.id, shadow_predictions.c.proba)).all()
    assert purged == 1
    assert [tuple(row) for row in kept] == [("recent", 0.1)]
