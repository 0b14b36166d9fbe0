"""The Python client and the `contraband` CLI against the running service."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from client import PredictionClient, ServiceError
from core.settings import PROJECT_ROOT
from devstack.stack import ServiceStack
from tests.factories import COURSE_OBSERVATION, new_id, observation, prediction_request


def write_stops_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *COURSE_OBSERVATION])
        for row in rows:
            values = [str(v).lower() if isinstance(v, bool) else v for v in row["observation"].values()]  # type: ignore[attr-defined]
            writer.writerow([row["id"], *values])


def test_cli_submits_a_csv_follows_it_and_writes_results_with_line_numbers(
    stack: ServiceStack, tmp_path: Path
) -> None:
    rows = [prediction_request(id=new_id("cli"), hour=h) for h in (0, 5, 10, 15, 20)]
    rows[2] = prediction_request(id=rows[2]["id"], StatuteReason="Stop sign")
    stops = tmp_path / "stops.csv"
    write_stops_csv(stops, rows)
    out = tmp_path / "results.csv"

    cli = subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", str(stops), "--out", str(out),
         "--url", stack.base_url, "--chunk-rows", "2", "--poll-seconds", "0.1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 3, cli.stderr
    assert f"line 4: id {rows[2]['id']!r}" in cli.stderr and "Stop Sign" in cli.stderr
    assert "4 rows accepted, 1 rejected, in 3 batches" in cli.stderr
    results = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["line"], r["id"]) for r in results] == [
        ("2", rows[0]["id"]),
        ("3", rows[1]["id"]),
        ("5", rows[3]["id"]),
        ("6", rows[4]["id"]),
    ]
    assert {r["status"] for r in results} == {"done"}
    # Which version accepted each row, as the API's own CSV says (no rollout here: the one that predicted).
    assert all(r["accepted_version"] and r["accepted_version"] == r["model_version"] for r in results)


def test_cli_uploads_the_readmes_example_file_as_the_readme_says(stack: ServiceStack, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    cli = subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", "docs/stops.csv", "--out", str(out),
         "--url", stack.base_url, "--poll-seconds", "0.1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 3, cli.stderr
    assert "line 4: id 'csv-3': {'observation': {'StatuteReason': ['Must be one of: " in cli.stderr
    assert "9 rows accepted, 1 rejected, in 1 batches" in cli.stderr
    results = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["line"], r["id"]) for r in results] == [
        (str(n + 1), f"csv-{n}") for n in range(1, 11) if n != 3
    ]
    assert {r["status"] for r in results} == {"done"}


def test_cli_results_show_an_id_a_spreadsheet_would_run_as_text(stack: ServiceStack, tmp_path: Path) -> None:
    formula = f'=HYPERLINK("http://evil")-{new_id("x")}'
    stops, out = tmp_path / "stops.csv", tmp_path / "results.csv"
    write_stops_csv(stops, [prediction_request(id=formula)])
    cli = subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", str(stops), "--out", str(out),
         "--url", stack.base_url, "--poll-seconds", "0.1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert next(csv.DictReader(out.read_text().splitlines()))["id"] == "'" + formula


def test_cli_without_wait_prints_batch_ids_and_exits_zero(stack: ServiceStack, tmp_path: Path) -> None:
    stops = tmp_path / "stops.csv"
    write_stops_csv(stops, [prediction_request(id=new_id("nowait"))])
    cli = subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", str(stops), "--no-wait", "--url", stack.base_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert len(cli.stdout.split()) == 1


def test_cli_reports_an_unreachable_service_and_exits_one(tmp_path: Path) -> None:
    stops = tmp_path / "stops.csv"
    write_stops_csv(stops, [prediction_request()])
    cli = subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", str(stops),
         "--url", "http://127.0.0.1:9", "--timeout", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 1
    assert "contraband: " in cli.stderr and "Connection refused" in cli.stderr


def test_client_submits_waits_labels_and_reads_batches(stack: ServiceStack) -> None:
    with PredictionClient(stack.base_url, timeout=10) as client:
        observation_id = new_id("client")
        assert client.submit(observation_id, observation())["status"] == "queued"
        done = client.wait(observation_id, timeout=30)
        assert done["status"] == "done"
        assert client.update(observation_id, True)["true_class"] is True

        items = [prediction_request() for _ in range(3)]
        receipt = client.submit_batch(items)
        assert receipt["accepted"] == 3
        for item in items:
            client.wait(item["id"], timeout=30)
        assert [r["id"] for r in client.iter_results(receipt["batch_id"])] == [i["id"] for i in items]

        with pytest.raises(ServiceError) as error:
            client.submit(new_id(), observation(hour=24))
        assert error.value.status == 422 and "hour" in error.value.error["fields"]["observation"]


@pytest.mark.parametrize(
    "template", ["/{}", "{}/", "{}-q?x=1", "{}-hash#1", "{}-pct%2F", "{}-a//b", "{}-with space", "{}-café"]
)
def test_client_reads_back_an_id_holding_characters_a_url_gives_meaning_to(
    stack: ServiceStack, template: str
) -> None:
    observation_id = template.format(new_id("url"))
    with PredictionClient(stack.base_url, timeout=10) as client:
        client.submit(observation_id, observation())
        assert client.get(observation_id)["id"] == observation_id
        assert client.wait(observation_id, timeout=30)["status"] == "done"


def test_cli_atomic_chunk_with_a_bad_row_names_it_and_exits_three(
    stack: ServiceStack, tmp_path: Path
) -> None:
    rows = [prediction_request(id=new_id("atomic-cli")), prediction_request(id=new_id("atomic-cli"), hour=24)]
    stops = tmp_path / "stops.csv"
    write_stops_csv(stops, rows)
    cli = subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", str(stops), "--atomic", "--url", stack.base_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 3, cli.stderr
    assert "lines 2-3: not stored (atomic)" in cli.stderr
    assert f"line 3: id {rows[1]['id']!r}" in cli.stderr


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "submit", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_cli_reports_line_numbers_of_the_file_with_multi_line_cells_and_blank_lines(
    stack: ServiceStack, tmp_path: Path
) -> None:
    good = prediction_request(id=new_id("ml"))
    bad = prediction_request(id=new_id("ml"), StatuteReason="Stop\nsign")  # a quoted cell over two lines
    last = prediction_request(id=new_id("ml"), hour=24)
    stops = tmp_path / "stops.csv"
    write_stops_csv(stops, [good, bad, last])
    stops.write_text(stops.read_text().replace(f"\n{last['id']}", f"\n\n{last['id']}"))  # a blank line
    out = tmp_path / "results.csv"
    cli = run_cli(str(stops), "--out", str(out), "--url", stack.base_url, "--poll-seconds", "0.1")
    assert cli.returncode == 3, cli.stderr
    # header: line 1; good: 2; bad: 3-4; blank: 5; last: 6
    assert f"line 3: id {bad['id']!r}" in cli.stderr and f"line 6: id {last['id']!r}" in cli.stderr
    results = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["line"], r["id"], r["prediction"] in ("true", "false")) for r in results] == [
        ("2", good["id"], True)
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("id," + ",".join(COURSE_OBSERVATION) + "\n", "no data rows")],
)
def test_cli_refuses_a_file_without_rows_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    stops = tmp_path / "stops.csv"
    stops.write_text(content)
    cli = run_cli(str(stops), "--url", "http://127.0.0.1:9")
    assert cli.returncode == 1 and message in cli.stderr and "Traceback" not in cli.stderr


@pytest.mark.parametrize(
    "options", [["--out", "/nonexistent/folder/results.csv"], ["--chunk-rows", "0"], ["--chunk-rows", "-5"]]
)
def test_cli_checks_its_options_before_uploading(tmp_path: Path, options: list[str]) -> None:
    stops = tmp_path / "stops.csv"
    write_stops_csv(stops, [prediction_request(id=new_id("opt"))])
    cli = run_cli(str(stops), *options, "--url", "http://127.0.0.1:9")  # nothing listens: no upload tried
    assert cli.returncode == 2 and "Traceback" not in cli.stderr and "error:" in cli.stderr
