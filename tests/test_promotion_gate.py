"""The promotion gate: a candidate bundle serves only if it meets its precision bar and its checksums."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from core.feature_spec import METADATA_FILE, PIPELINE_FILE, current_version, read_metadata
from core.frames import build_frame
from core.rollout.state import Rollout
from core.storage.engine import make_engine
from core.storage.migrate import upgrade_to_head
from core.storage.observations import insert_queued, save_true_class
from core.storage.records import utc_now
from core.storage.rollouts import write_rollout
from training.data import build_training_table
from training.promotion import compare_bundles, main
from training.train import SEED
from worker.bundle import ModelBundle

STOPS = 80


# Each test scores bundles on the held-out stops of the training table (or runs the command that does).
pytestmark = pytest.mark.slow


def candidate_copy(artifacts: Path, version: str, **metadata_changes: Any) -> str:
    """Copy the serving bundle as another version, with some of its metadata replaced; return the version."""
    shutil.copytree(artifacts / current_version(artifacts), artifacts / version)
    edit_metadata(artifacts / version, version=version, **metadata_changes)
    return version


def edit_metadata(directory: Path, **changes: Any) -> None:
    metadata = read_metadata(directory)
    (directory / METADATA_FILE).write_text(json.dumps(metadata | changes, indent=2) + "\n")


def labelled_database(directory: Path, rows: list[tuple[dict[str, Any], bool | None]]) -> str:
    """Store each observation as submitted, and its true class when it has one; return the database URL."""
    url = f"sqlite:///{directory / 'database' / 'predictions.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        for index, (observation, true_class) in enumerate(rows):
            insert_queued(conn=conn, observation_id=f"stop-{index}", observation=observation, now=utc_now())
            if true_class is not None:
                save_true_class(
                    conn=conn, observation_id=f"stop-{index}", true_class=true_class, now=utc_now()
                )
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def stops() -> tuple[list[dict[str, Any]], list[bool]]:
    """Real stops with their real outcomes, as observations the gateway would have stored."""
    features, target, _ = build_training_table(seed=SEED)
    return features.head(STOPS).to_dict("records"), [bool(t) for t in target.head(STOPS)]  # type: ignore[return-value]


def test_committed_bundle_against_itself_is_promotable_with_the_figures_it_recorded(
    bundle_copy: Path,
) -> None:
    version = current_version(bundle_copy)
    report = compare_bundles(bundle_copy, version)
    recorded = read_metadata(bundle_copy / version)["held_out"]

    assert report.promotable, report.reasons
    assert report.reasons == []
    assert report.candidate is not None and report.candidate.held_out is not None
    assert report.serving == report.candidate, "the same bundle on the same rows gives the same figures"
    held_out = report.candidate.held_out
    assert held_out.rows == recorded["rows"] == 23017
    for name in ("roc_auc", "precision", "recall"):
        assert round(getattr(held_out, name), 4) == recorded["metrics"][name]
    assert round(held_out.positive_calls / held_out.rows, 4) == recorded["metrics"]["positive_rate_predicted"]


def test_candidate_whose_bar_it_cannot_reach_is_refused_for_precision(bundle_copy: Path) -> None:
    version = candidate_copy(bundle_copy, "strict-bar", precision_bar=0.99)

    report = compare_bundles(bundle_copy, version)

    assert not report.promotable
    [reason] = report.reasons
    assert "precision 0.5206" in reason and "held-out rows" in reason and "precision bar 0.99" in reason
    assert report.serving is not None and report.serving.precision_bar == 0.5


def test_candidate_whose_threshold_calls_too_many_searches_is_refused_for_precision(
    bundle_copy: Path,
) -> None:
    version = candidate_copy(bundle_copy, "low-threshold", threshold=0.05)

    report = compare_bundles(bundle_copy, version)

    assert not report.promotable
    assert report.candidate is not None and report.candidate.held_out is not None
    assert report.serving is not None and report.serving.held_out is not None
    assert report.candidate.held_out.precision < 0.5 <= report.serving.held_out.precision
    [reason] = report.reasons
    assert "precision" in reason and "threshold 0.05" in reason and "below its precision bar 0.5" in reason


def test_candidate_with_one_byte_changed_in_its_pipeline_is_refused_for_its_checksum(
    bundle_copy: Path,
) -> None:
    version = candidate_copy(bundle_copy, "tampered")
    pipeline = bundle_copy / version / PIPELINE_FILE
    content = bytearray(pipeline.read_bytes())
    content[len(content) // 2] ^= 0x01
    pipeline.write_bytes(bytes(content))

    report = compare_bundles(bundle_copy, version)

    assert not report.promotable
    assert report.candidate is None, "a bundle that fails verification is never unpickled, let alone scored"
    [reason] = report.reasons
    assert PIPELINE_FILE in reason and "SHA-256" in reason and "does not match" in reason


def test_serving_bundle_held_out_otherwise_is_scored_on_the_candidates_rows(bundle_copy: Path) -> None:
    version = candidate_copy(bundle_copy, "candidate")
    edit_metadata(
        bundle_copy / current_version(bundle_copy),
        held_out={"fraction": 0.2, "seed": 7, "rows": 15344, "metrics": {}},
    )

    report = compare_bundles(bundle_copy, version)

    assert report.promotable, report.reasons
    assert (report.held_out_fraction, report.held_out_seed) == (0.3, 42)
    assert report.serving is not None and report.serving.held_out is not None
    assert report.serving.held_out.rows == 23017
    assert any("fraction 0.2, seed 7" in note for note in report.notes)


def test_labelled_outcomes_in_the_database_are_counted_and_scored(
    bundle_copy: Path, tmp_path: Path, stops: tuple[list[dict[str, Any]], list[bool]], bundle: ModelBundle
) -> None:
    observations, truth = stops
    labelled, unlabelled = 60, STOPS - 60
    url = labelled_database(
        tmp_path,
        [*zip(observations[:labelled], truth[:labelled], strict=True)]
        + [(o, None) for o in observations[labelled:]],
    )

    report = compare_bundles(bundle_copy, current_version(bundle_copy), database_url=url)

    assert unlabelled > 0
    assert report.candidate is not None and report.candidate.labelled is not None
    scores = report.candidate.labelled
    proba = bundle.predict_proba(build_frame(observations[:labelled], bundle.spec))
    calls = proba >= bundle.threshold
    assert scores.rows == labelled
    assert scores.positive_calls == int(calls.sum())
    assert scores.precision == pytest.approx(precision_score(truth[:labelled], calls))
    assert scores.recall == pytest.approx(recall_score(truth[:labelled], calls))
    assert scores.roc_auc == pytest.approx(roc_auc_score(truth[:labelled], proba))
    assert report.serving is not None and report.serving.labelled == scores


@pytest.mark.parametrize(("labelled", "judged"), [(60, True), (10, False)])
def test_labels_that_contradict_every_call_refuse_the_candidate_once_there_are_enough(
    bundle_copy: Path,
    tmp_path: Path,
    stops: tuple[list[dict[str, Any]], list[bool]],
    bundle: ModelBundle,
    labelled: int,
    judged: bool,
) -> None:
    observations = stops[0][:labelled]
    proba = bundle.predict_proba(build_frame(observations, bundle.spec))
    wrong = [bool(p < bundle.threshold) for p in proba]
    url = labelled_database(tmp_path, list(zip(observations, wrong, strict=True)))

    report = compare_bundles(bundle_copy, current_version(bundle_copy), database_url=url, min_labelled=50)

    assert report.candidate is not None and report.candidate.labelled is not None
    assert report.candidate.labelled.precision == 0.0
    assert report.promotable is not judged
    if judged:
        [reason] = report.reasons
        assert "precision 0.0000" in reason and f"on {labelled} labelled outcomes" in reason
    else:
        assert any(f"{labelled} labelled outcomes, fewer than 50" in note for note in report.notes)


def test_command_line_prints_both_bundles_side_by_side_and_exits_0(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = current_version(bundle_copy)
    missing = f"sqlite:///{bundle_copy / 'no-such.db'}"

    status = main([version, "--artifacts-dir", str(bundle_copy), "--database-url", missing])

    printed = capsys.readouterr().out
    assert status == 0
    assert f"serving {version}" in printed and f"candidate {version}" in printed
    assert "0.5206" in printed and "no database at" in printed and "PROMOTABLE" in printed
    assert not (bundle_copy / "no-such.db").exists(), "looking for labels creates no database"


def test_command_line_exits_1_with_its_reasons_when_refused(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = candidate_copy(bundle_copy, "strict-bar", precision_bar=0.99)
    missing = f"sqlite:///{bundle_copy / 'no-such.db'}"

    status = main([version, "--artifacts-dir", str(bundle_copy), "--database-url", missing, "--json"])

    printed = json.loads(capsys.readouterr().out)
    assert status == 1
    assert printed["promotable"] is False
    assert "precision bar 0.99" in printed["reasons"][0]


@pytest.mark.parametrize("version", ["no-such-version", "../artifacts"])
def test_command_line_exits_2_for_a_candidate_that_is_not_a_bundle(
    bundle_copy: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([version, "--artifacts-dir", str(bundle_copy)])

    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_serving_bundle_is_the_stable_version_of_the_stored_rollout_not_artifacts_current(
    bundle_copy: Path, tmp_path: Path
) -> None:
    promoted = candidate_copy(bundle_copy, "2026.12.01")  # promoted earlier; artifacts/current still older
    candidate = candidate_copy(bundle_copy, "2026.12.08")
    url = labelled_database(tmp_path, [])
    engine = make_engine(url)
    with engine.begin() as conn:
        write_rollout(
            conn=conn, rollout=Rollout(stable_version=promoted), action="set", by="cli", now=utc_now()
        )
    engine.dispose()

    report = compare_bundles(bundle_copy, candidate, database_url=url)

    assert current_version(bundle_copy) != promoted
    assert report.serving_version == promoted
