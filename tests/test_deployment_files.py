"""The compose file and .env.example stay valid and cover every setting."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from tests.tools import require_tool


def test_every_setting_is_documented_for_operators() -> None:
    documented = (PROJECT_ROOT / ".env.example").read_text() + (
        PROJECT_ROOT / "docker-compose.yml"
    ).read_text()
    missing = [name.upper() for name in Settings.model_fields]
    assert [name for name in missing if f"{name}:" not in documented and f"{name}=" not in documented] == []


def test_every_env_example_variable_group_has_a_comment() -> None:
    # A comment may describe the few related variables right below it.
    uncommented = []
    since_comment = None
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        if line.startswith("#"):
            since_comment = 0
        elif "=" in line:
            if since_comment is None or since_comment >= 3:
                uncommented.append(line)
            since_comment = None if since_comment is None else since_comment + 1
    assert uncommented == []


def test_compose_file_is_valid(tmp_path: Path) -> None:
    require_tool("docker-compose", package="docker-compose")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        ["docker-compose", "config", "--services"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "postgres", "redis", "migrate", "gateway", "worker", "redrive", "prometheus",
    }  # fmt: skip


def test_prometheus_config_and_alert_rules_are_valid_and_fire_when_they_should() -> None:
    require_tool("promtool", package="prometheus")
    monitoring = PROJECT_ROOT / "monitoring"
    for command in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(
            ["promtool", *command], cwd=monitoring, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
