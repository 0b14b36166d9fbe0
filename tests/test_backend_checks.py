"""The suite's servers: a RabbitMQ whose management API does not answer is named when its pass starts, with
what to run, before a database is made for it (not minutes later, at teardown); and a teardown step that
fails does not leave the others undone."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devstack import backends
from devstack.embedded_redis import free_port


def no_database() -> tuple[str, Callable[[], None]]:
    pytest.fail("a database was made for a pass that cannot run")


def test_a_rabbitmq_without_its_management_api_is_named_before_anything_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "RABBITMQ_MANAGEMENT_URL", f"http://guest:guest@127.0.0.1:{free_port()}")
    monkeypatch.setattr(backends, "_fresh_postgres_database", no_database)

    with pytest.raises(RuntimeError, match="scripts/ensure-services") as refused:
        backends.rabbitmq_backend()

    assert "guest" not in str(refused.value)


def test_closing_a_backend_runs_every_teardown_step_even_after_one_fails() -> None:
    ran: list[str] = []

    def queues_unreachable() -> None:
        ran.append("queues")
        raise ConnectionError("management API gone")

    backend = backends.Backend(
        name="rabbitmq",
        database_url="",
        broker_url="",
        queue_name="predictions",
        teardown=[lambda: ran.append("database"), queues_unreachable],
    )

    with pytest.raises(ConnectionError):
        backend.close()

    assert ran == ["queues", "database"], "the database is dropped although deleting the queues failed"
