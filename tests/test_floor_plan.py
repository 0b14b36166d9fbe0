"""The tree keeps its floor plan: imports run one way, and all SQL lives in the storage package."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT

# What each folder may import from the project's own packages and from the heavier libraries.
FORBIDDEN = {
    "core": {
        "gateway",
        "worker",
        "training",
        "devstack",
        "bench",
        "tests",
        "client",
        "admin",
        "flask",
        "sklearn",
    },
    "gateway": {"training", "devstack", "bench", "tests", "admin", "sklearn", "pandas", "numpy", "joblib"},
    "worker": {"gateway", "training", "devstack", "bench", "tests", "admin", "flask"},
    "training": {"gateway", "devstack", "bench", "tests", "admin", "flask"},
    "devstack": {"bench", "tests", "admin"},
    "bench": {"tests"},
    "client": {"core", "gateway", "worker", "training", "devstack", "bench", "tests", "admin"},
    # Operator command lines: the shared core only, no HTTP.
    "admin": {"gateway", "worker", "training", "devstack", "bench", "tests", "client", "flask", "sklearn"},
    "tests": {"bench"},
}
# gateway and the operator commands (which check queued rows against another version's schema) import the
# request schemas of worker/schemas.py and nothing else of the worker's.
ALLOWED_ACROSS = {("gateway", "worker.schemas"), ("admin", "worker.schemas")}


def python_files(folder: str) -> Iterator[Path]:
    yield from (path for path in (PROJECT_ROOT / folder).rglob("*.py") if "versions" not in path.parts)


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_run_one_way(folder: str) -> None:
    crossings = [
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path in python_files(folder)
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[folder]
        and not any(folder == owner and module.startswith(allowed) for owner, allowed in ALLOWED_ACROSS)
    ]
    assert crossings == []


def test_core_imports_no_celery_tasks_and_the_gateway_no_worker_code_but_schemas() -> None:
    offending = [
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for folder in ("core", "gateway")
        for path in python_files(folder)
        for module in imported_modules(path)
        if module.startswith("worker") and (folder == "core" or module != "worker.schemas")
    ]
    assert offending == []


SQL_MARKERS = ("sqlalchemy", "psycopg")


@pytest.mark.parametrize("folder", ["gateway", "worker", "training", "devstack", "bench", "client", "admin"])
def test_sql_lives_only_in_the_storage_package(folder: str) -> None:
    # The dev stack creates and drops the scratch databases of test runs: that is administration, not data.
    allowed = {PROJECT_ROOT / "devstack" / "backends.py": {"psycopg"}}
    offending = [
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path in python_files(folder)
        for module in imported_modules(path)
        if module.split(".")[0] in SQL_MARKERS
        and module.split(".")[0] not in allowed.get(path, set())
        and not module.startswith("sqlalchemy.engine")  # the Engine type, passed around, runs no SQL
        and not module.startswith("sqlalchemy.exc")  # the gateway turns database errors into 503s
    ]
    assert offending == []


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(PROJECT_ROOT)): length
        for folder in FORBIDDEN.keys() - {"tests"}
        for path in python_files(folder)
        if (length := len(path.read_text().splitlines())) > 300
    }
    assert long == {}
