"""The compose file, .env.example, Prometheus and Grafana files stay valid and cover every setting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from core.settings import PROJECT_ROOT, Settings
from tests.grafana import (
    GRAFANA_DIR,
    dashboard_metric_names,
    dashboard_panels,
    dashboard_queries,
    promql_for_promtool,
)
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
        "postgres", "redis", "migrate", "gateway", "worker", "worker-bulk", "redrive", "prometheus",
        "grafana", "flower",
    }  # fmt: skip


def test_every_role_that_reads_bundles_shares_one_artifacts_volume(tmp_path: Path) -> None:
    # A version copied in once reaches every gateway and worker: the rollout needs no new image.
    require_tool("docker-compose", package="docker-compose")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        ["docker-compose", "config"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    [artifacts_dir] = re.findall(r"^ENV ARTIFACTS_DIR=(\S+)$", dockerfile, flags=re.MULTILINE)
    for name in ("migrate", "gateway", "worker", "worker-bulk", "redrive"):
        mounts = [
            (v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
            for v in config["services"][name].get("volumes", [])
        ]
        assert ("model-artifacts", artifacts_dir) in mounts, name
    assert "model-artifacts" in config["volumes"]


def test_compose_override_runs_every_service_on_rabbitmq(tmp_path: Path) -> None:
    require_tool("docker-compose", package="docker-compose")
    for name in ("docker-compose.yml", "docker-compose.rabbitmq.yml", "Dockerfile"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "-f", "docker-compose.rabbitmq.yml", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert "rabbitmq" in services
    for name in ("migrate", "gateway", "worker", "worker-bulk", "redrive", "flower"):
        environment = services[name]["environment"]
        assert environment["BROKER_URL"].startswith("amqp://"), name
    for name in ("migrate", "gateway", "worker", "worker-bulk", "redrive"):
        environment = services[name]["environment"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0", name
        assert environment["BROKER_MANAGEMENT_URL"].startswith("http://"), name
        assert environment["APP_ENV"] == "production", name  # the base file's settings are kept
    for name in ("gateway", "worker", "worker-bulk", "redrive", "flower"):
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name


def test_prometheus_config_and_alert_rules_are_valid_and_fire_when_they_should() -> None:
    require_tool("promtool", package="prometheus")
    monitoring = PROJECT_ROOT / "deploy" / "monitoring"
    for command in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(
            ["promtool", *command], cwd=monitoring, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    require_tool("promtool", package="prometheus")
    queries = dashboard_queries()
    assert queries
    # promtool parses PromQL offline only in rule files: each query becomes a recording rule (JSON is YAML).
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for number, expr in enumerate(queries):
        rules += [
            f"      - record: dashboard:query_{number}",
            f"        expr: {json.dumps(promql_for_promtool(expr))}",
        ]
    (tmp_path / "dashboard.yml").write_text("\n".join(rules) + "\n")
    result = subprocess.run(
        ["promtool", "check", "rules", "dashboard.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_every_dashboard_panel_queries_the_provisioned_datasource() -> None:
    provisioned = (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)", provisioned, re.MULTILINE)
    assert uid is not None
    expected = {"type": "prometheus", "uid": uid.group(1)}
    for panel in dashboard_panels():
        queried = [panel["datasource"]] + [target["datasource"] for target in panel["targets"]]
        assert queried == [expected] * len(queried), panel["title"]


def test_dashboard_names_only_metrics_the_service_defines() -> None:
    # A typo in a query shows as an empty panel, not an error: look each name up where metrics are declared.
    folders = [PROJECT_ROOT / folder for folder in ("core", "gateway", "worker")]
    sources = "".join(path.read_text() for folder in folders for path in folder.rglob("*.py"))
    undefined = [
        name
        for name in sorted(dashboard_metric_names())
        if f'"{name}"' not in sources and f'"{name.removesuffix("_total")}"' not in sources
    ]
    assert undefined == []


def test_a_worker_metrics_port_needs_a_folder_for_its_pool_processes() -> None:
    with pytest.raises(ValidationError, match="WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR"):
        Settings(worker_metrics_port=9808)
    served = Settings(worker_metrics_port=9808, prometheus_multiproc_dir=Path("/tmp/x"))
    assert served.worker_metrics_port == 9808
