"""Steps that test scenarios take against the running service: wait for a result, restart Postgres."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import ServiceStack, wait_until


def poll_until_finished(stack: ServiceStack, observation_id: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the result URL until the observation is done or failed; return the last body."""

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = requests.get(stack.url(f"/predictions/{observation_id}"), timeout=5).json()
        return body if body.get("status") in ("done", "failed") else None

    return wait_until(finished, timeout=timeout)


def postgres_server(action: str) -> None:
    """Start or stop the local Postgres server, as an operator restarting it would."""
    version = sorted(Path("/etc/postgresql").iterdir())[0].name
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
    )


def scrape(stack: ServiceStack) -> dict[str, float]:
    """Return every sample of /metrics as 'name{label="value",...}' -> value."""
    response = requests.get(stack.url("/metrics"), timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
