"""A RabbitMQ whose management API does not answer is named when its pass of the suite starts, with what to
run, and before a database is made for it: not minutes later, as an error at teardown."""

from __future__ import annotations

import psycopg
import pytest

from devstack import backends
from devstack.embedded_redis import free_port


def scratch_databases() -> set[str]:
    query = "SELECT datname FROM pg_database WHERE datname LIKE 'contraband_test_%'"
    with psycopg.connect(backends.POSTGRES_ADMIN) as admin:
        return {name for (name,) in admin.execute(query).fetchall()}


def test_a_rabbitmq_without_its_management_api_is_named_before_anything_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "RABBITMQ_MANAGEMENT_URL", f"http://guest:guest@127.0.0.1:{free_port()}")
    before = scratch_databases()

    with pytest.raises(RuntimeError, match="scripts/ensure-services"):
        backends.rabbitmq_backend()

    assert scratch_databases() == before
