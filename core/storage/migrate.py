"""Apply the Alembic migrations to the configured database (python -m core.storage.migrate)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import get_settings

# Found beside this module, wherever the package is installed (the alembic.ini at the project root points
# here too, for the alembic command line).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def upgrade_to_head(database_url: str | None = None) -> None:
    """Bring the database schema to the newest migration."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url or get_settings().database_url
    _ensure_sqlite_folder(config.attributes["database_url"])
    command.upgrade(config, "head")


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    upgrade_to_head()
