"""The migrations build, on Postgres and on SQLite, the very tables, columns and indexes the code declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.tables import metadata
from devstack.backends import postgres_backend


@pytest.fixture(params=["postgres", "sqlite"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    backend = postgres_backend()
    try:
        yield backend.database_url
    finally:
        backend.close()


def test_the_migrated_schema_is_the_declared_one(fresh_database_url: str) -> None:
    upgrade_to_head(fresh_database_url)
    engine = make_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert differences == []
