"""Apply the Alembic migrations to the configured database (python -m worker.migrate)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from worker.settings import PROJECT_ROOT, get_settings


def upgrade_to_head(database_url: str | None = None) -> None:
    """Bring the database schema to the newest migration."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url or get_settings().database_url
    _ensure_sqlite_folder(config.attributes["database_url"])
    command.upgrade(config, "head")


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    upgrade_to_head()
