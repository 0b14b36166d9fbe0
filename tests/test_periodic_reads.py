"""The gateway's periodic reads (backlog, rollout): a thread per process that stops when asked, and a database
outage logged when it starts and when it ends, not at every reading."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from core.settings import Settings
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from devstack.stack import wait_until
from gateway.predictions.backlog_guard import BacklogGuard
from gateway.server.periodic import EveryProcess


def test_a_periodic_read_repeats_until_stopped_then_its_thread_ends() -> None:
    calls: list[float] = []
    reads = EveryProcess("test-reads", 0.01, lambda: calls.append(time.monotonic()))
    reads.ensure_started(lambda: calls.append(time.monotonic()))
    reads.ensure_started(lambda: pytest.fail("the first read runs once per process"))
    wait_until(lambda: len(calls) >= 5, timeout=10)
    reads.stop()
    wait_until(lambda: not any(t.name == "test-reads" for t in threading.enumerate()), timeout=10)
    stopped_at = len(calls)
    time.sleep(0.1)
    assert len(calls) == stopped_at


def test_backlog_guard_logs_a_database_outage_once_and_its_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "gateway.db"
    upgrade_to_head(f"sqlite:///{database}")
    engine = make_engine(f"sqlite:///{database}")
    guard = BacklogGuard(engine, Settings(database_url=f"sqlite:///{database}"))
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.predictions.backlog_guard"):
            guard.check_now()
            database.unlink()  # the next connection opens an empty database: every reading fails
            engine.dispose()
            for _ in range(5):
                guard.check_now()
            upgrade_to_head(f"sqlite:///{database}")
            for _ in range(3):
                guard.check_now()
    finally:
        engine.dispose()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "backlog guard: database unreachable (logged again once it answers)",
        "backlog guard: database answers again",
    ]
    assert caplog.records[0].exc_info is not None  # the first failure comes with its error
