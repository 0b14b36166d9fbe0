"""The model is watched: a stream like training, then one shifted in two features, then labels under the bar.

Each backend gets a stack of its own, so the window holds these streams and nothing other tests sent.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from PIL import Image

from core.monitoring.reference import DRIFT_LINE
from core.settings import PROJECT_ROOT
from devstack.backends import embedded_backend, postgres_backend
from devstack.stack import ServiceStack, wait_until
from tests.browser import rendered_dom, screenshot
from tests.database import backdate_labels, backdate_receipt_times, some_observation_ids
from tests.factories import frame_records, new_id
from tests.grafana import dashboard_metric_names
from tests.service_steps import scrape
from tests.tools import require_tool
from training.data import build_training_table

SHIFTED = {"hour": 2, "StatuteReason": "Seatbelt"}  # every stop at 2 a.m., for one statute reason
STREAM_ROWS = 600
ALERT_RED = (
    0xC0,
    0x39,
    0x2B,
)  # gateway/dashboard/charts.py LINE_COLOUR: limit lines, and bars on the bad side of theirs


@pytest.fixture(scope="module", params=["postgres", "embedded"])
def watched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, starts_servers: None
) -> Iterator[ServiceStack]:
    """A stack of its own, fed a training-like stream, a shifted stream and labels; the monitor then ran."""
    work_dir = tmp_path_factory.mktemp(f"watched-{request.param}")
    backend = postgres_backend() if request.param == "postgres" else embedded_backend(work_dir)
    stack = ServiceStack(backend, work_dir)
    stack.env["BULK_MAX_ITEMS"] = "5000"
    try:
        stack.start_all()
        features, _target, _provenance = build_training_table()
        drawn = frame_records(features.sample(2 * STREAM_ROWS, random_state=7))
        like_training = [_plain(row) for row in drawn[:STREAM_ROWS]]
        shifted = [{**_plain(row), **SHIFTED} for row in drawn[STREAM_ROWS:]]
        ids = _submit_batch(stack, like_training) + _submit_batch(stack, shifted)
        _label_under_the_bar(stack, ids)
        stack.run_monitor()
        yield stack
    finally:
        stack.close()
        backend.close()


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value.item() if hasattr(value, "item") else value for name, value in row.items()}


def _submit_batch(stack: ServiceStack, observations: list[dict[str, Any]]) -> list[str]:
    items: list[dict[str, Any]] = [{"id": new_id("watched"), "observation": o} for o in observations]
    receipt = requests.post(stack.url("/batches"), json={"observations": items}, timeout=60)
    assert receipt.status_code == 202, receipt.text
    batch = receipt.json()["batch_id"]

    assert receipt.json()["accepted"] == len(items)

    def finished() -> bool:
        status: str = requests.get(stack.url(f"/batches/{batch}"), timeout=10).json()["status"]
        return status == "done"

    wait_until(finished, timeout=120, interval=0.5)
    return [item["id"] for item in items]


def _label_under_the_bar(stack: ServiceStack, ids: list[str]) -> None:
    """Label 100 positive calls (30 right: precision 0.3) and 50 negative calls (all wrong)."""
    with requests.Session() as api:
        results = [api.get(stack.url(f"/predictions/{i}"), timeout=10).json() for i in ids]
        positive = [r["id"] for r in results if r["prediction"]][:100]
        negative = [r["id"] for r in results if not r["prediction"]][:50]
        assert len(positive) == 100 and len(negative) == 50
        for n, observation_id in enumerate(positive):
            truth = n < 30
            answer = api.post(
                stack.url("/update"), json={"id": observation_id, "true_class": truth}, timeout=10
            )
            assert answer.status_code == 200
        for observation_id in negative:
            answer = api.post(
                stack.url("/update"), json={"id": observation_id, "true_class": True}, timeout=10
            )
            assert answer.status_code == 200


def test_drift_is_above_the_line_for_the_shifted_features_only(watched: ServiceStack) -> None:
    metrics = scrape(watched)
    psi = {
        name[len('model_feature_psi{feature="') : -2]: v
        for name, v in metrics.items()
        if "feature_psi{" in name
    }
    assert {name for name, value in psi.items() if value > DRIFT_LINE} == set(SHIFTED), psi
    assert len(psi) == 10  # every feature had enough observations for a figure


def test_live_precision_is_under_the_bar_on_the_labels_sent(watched: ServiceStack) -> None:
    metrics = scrape(watched)
    (version,) = {name.split('"')[1] for name in metrics if name.startswith("model_live_precision{")}
    assert metrics[f'model_live_precision{{model_version="{version}"}}'] == pytest.approx(0.3)
    assert metrics[f'model_live_recall{{model_version="{version}"}}'] == pytest.approx(30 / 80)
    assert metrics[f'model_labelled_positive_calls{{model_version="{version}"}}'] == 100
    assert metrics[f'model_labelled_outcomes{{model_version="{version}"}}'] == 150
    assert metrics["model_precision_bar"] == 0.5


def test_monitoring_answers_the_same_figures_as_the_metrics(watched: ServiceStack) -> None:
    metrics = scrape(watched)
    answer = requests.get(watched.url("/monitoring?window=1h"), timeout=30)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["reference"] is True
    for feature, figures in report["features"].items():
        assert figures["psi"] == pytest.approx(metrics[f'model_feature_psi{{feature="{feature}"}}'])
        assert figures["drifted"] is (feature in SHIFTED)
        assert figures["observations"] == 2 * STREAM_ROWS
    (version,) = report["quality"]
    assert report["quality"][version]["all"]["precision"] == pytest.approx(0.3)
    assert report["quality"][version]["window"]["labelled"] == 150
    share = report["positive_share"]["by_version"][version]["share"]
    assert share == pytest.approx(metrics[f'model_positive_share{{model_version="{version}"}}'])
    assert report["probabilities"]["predictions"] == 2 * STREAM_ROWS
    assert math.isclose(sum(b["served"] for b in report["probabilities"]["bins"]), 1.0)


def test_the_window_is_a_duration_and_anything_else_is_a_json_422(watched: ServiceStack) -> None:
    report = requests.get(watched.url("/monitoring?window=30d"), timeout=30).json()
    assert report["window_s"] == 30 * 86_400
    assert all(f["observations"] == 2 * STREAM_ROWS for f in report["features"].values())
    bad = requests.get(watched.url("/monitoring?window=yesterday"), timeout=10)
    assert bad.status_code == 422
    assert "window" in bad.json()["error"]["fields"]


def test_the_worker_nodes_serve_what_the_model_answered(watched: ServiceStack) -> None:
    # The streams came as batches: the bulk lane's node predicted them; both nodes are scraped, and summed.
    samples: Counter[str] = Counter()
    for url in (watched.worker_metrics_url, watched.bulk_worker_metrics_url):
        text = requests.get(url, timeout=10).text
        samples.update(
            {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line[:1] != "#"}
        )
    (proba_count,) = [v for k, v in samples.items() if k.startswith("model_proba_count")]
    calls = sum(v for k, v in samples.items() if k.startswith("model_predictions_total"))
    # Computed predictions: a row the redrive published again while it waited is computed (and counted) twice.
    assert proba_count == calls >= 2 * STREAM_ROWS
    assert samples["worker_batch_size_count"] >= 1
    assert samples["worker_predict_seconds_count"] == samples["worker_batch_size_count"]


def test_monitor_runs_are_stamped_for_the_staleness_alert(watched: ServiceStack) -> None:
    before = scrape(watched)["model_monitor_last_run_timestamp_seconds"]
    watched.run_monitor()
    after = scrape(watched)["model_monitor_last_run_timestamp_seconds"]
    assert after > before
    assert abs(after - time.time()) < 60


def test_the_model_alerts_fire_on_these_figures(watched: ServiceStack, tmp_path: Path) -> None:
    """Feed the scraped figures, held for 40 minutes, to the real alert rules: drift and precision fire."""
    require_tool("promtool", package="prometheus")
    scraped = {name: value for name, value in scrape(watched).items() if name.startswith("model_")}
    version = next(name.split('"')[1] for name in scraped if name.startswith("model_live_precision{"))
    runbook = "README.md#when-a-model-alert-fires"

    def psi_of(feature: str) -> float:
        return scraped['model_feature_psi{feature="' + feature + '"}']

    drift_alerts = [
        {
            "exp_labels": {"severity": "ticket", "feature": feature},
            "exp_annotations": {
                "summary": f"Input feature {feature} drifted from training: PSI {psi_of(feature):.2f}",
                "runbook": runbook,
            },
        }
        for feature in sorted(SHIFTED)
    ]
    precision_alert = {
        "exp_labels": {"severity": "ticket", "model_version": version},
        "exp_annotations": {
            "summary": f"Live precision of model {version} is 30%, under its bar of 50%",
            "runbook": runbook,
        },
    }
    test_file = {
        "rule_files": [str(PROJECT_ROOT / "deploy" / "monitoring" / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": name, "values": f"{value!r}x40"} for name, value in scraped.items()
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "ModelFeatureDrift", "exp_alerts": drift_alerts},
                    {
                        "eval_time": "20m",
                        "alertname": "ModelPrecisionBelowBar",
                        "exp_alerts": [precision_alert],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "figures_test.yml"
    path.write_text(yaml.safe_dump(test_file, sort_keys=False))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_grafana_dashboard_queries_is_exported(watched: ServiceStack) -> None:
    """Scrape the gateway and the worker node as Prometheus would; every name a panel queries is there."""
    exported = set()
    for url in (watched.url("/metrics"), watched.worker_metrics_url, watched.bulk_worker_metrics_url):
        text = requests.get(url, timeout=10).text
        exported |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert dashboard_metric_names() - exported == set()


def drawn_bars(page: str) -> dict[str, float]:
    """Return the value of every bar the dashboard drew, by name (features; "<version> precision"...)."""
    return {
        name: float(value) for name, value in re.findall(r'data-name="([^"]+)" data-value="([-0-9.]+)"', page)
    }


def test_the_dashboard_draws_the_figures_the_metrics_carry(watched: ServiceStack) -> None:
    page = requests.get(watched.url("/dashboard"), timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script" not in page.text and 'style="' not in page.text
    metrics = scrape(watched)
    bars = drawn_bars(page.text)
    for name, value in metrics.items():
        if name.startswith("model_feature_psi{"):
            assert bars[name.split('"')[1]] == pytest.approx(value, abs=5e-5)
    version = next(name.split('"')[1] for name in metrics if name.startswith("model_live_precision{"))
    assert bars[f"{version} precision"] == pytest.approx(0.3, abs=5e-5)
    assert (
        requests.get(watched.url("/dashboard.css"), timeout=10).headers["Content-Type"].startswith("text/css")
    )


def test_a_browser_shows_the_drift_above_its_line(watched: ServiceStack, tmp_path: Path) -> None:
    """Chromium renders the page; the two drifted features' bars are drawn red, past their line.

    At 1,400 px the page has two columns and the drift chart is in the right one, whose only other red is two
    dashed limit lines and their labels (under 500 pixels); two drifted bars are thousands.
    """
    shot = screenshot(watched.url("/dashboard"), tmp_path / "dashboard.png", width=1400)
    with Image.open(shot) as image:
        right_column = image.convert("RGB").crop((700, 0, 1400, image.height))
        colours = right_column.getcolors(maxcolors=1 << 24) or []
    red = sum(count for count, colour in colours if colour == ALERT_RED)
    assert red >= 4_000, f"{red} red pixels in the right column; the screenshot is {shot}"
    dom = rendered_dom(watched.url("/dashboard"))
    for feature in SHIFTED:
        assert re.search(rf'fill="#C0392B" data-name="{feature}" data-value="', dom), feature


def test_windows_leave_out_what_came_before_them(watched: ServiceStack) -> None:
    """Last in this module: it moves 100 receipts and 50 labels two days back, out of an hour's window."""
    two_days = 2 * 86_400
    with watched.engine.begin() as conn:
        old_rows = some_observation_ids(conn=conn, limit=100, labelled=False)
        old_labels = some_observation_ids(conn=conn, limit=50, labelled=True)
        backdate_receipt_times(conn=conn, seconds=two_days, observation_ids=old_rows)
        backdate_labels(conn=conn, seconds=two_days, observation_ids=old_labels)
    hour = requests.get(watched.url("/monitoring?window=1h"), timeout=30).json()
    month = requests.get(watched.url("/monitoring?window=30d"), timeout=30).json()
    assert {f["observations"] for f in hour["features"].values()} == {2 * STREAM_ROWS - 100}
    assert {f["observations"] for f in month["features"].values()} == {2 * STREAM_ROWS}
    assert hour["probabilities"]["predictions"] == 2 * STREAM_ROWS - 100
    (version,) = hour["quality"]
    assert hour["quality"][version]["window"]["labelled"] == 100
    assert hour["quality"][version]["all"]["labelled"] == 150
    assert month["quality"][version]["window"]["labelled"] == 150
