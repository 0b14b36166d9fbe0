"""The bundle's monitoring reference: training bins, held-out calls, PSI, checksummed like any bundle file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from core.feature_spec import (
    METADATA_FILE,
    BundleError,
    FeatureColumn,
    FeatureSpec,
    current_version,
    read_metadata,
    verify_bundle,
)
from core.frames import build_frame
from core.monitoring.measures import expected_share_range
from core.monitoring.reference import (
    DRIFT_LINE,
    PROBA_BINS,
    REFERENCE_FILE,
    UNSEEN,
    FeatureReference,
    ModelReference,
    load_reference,
    proba_bin_counts,
    psi,
)
from core.settings import PROJECT_ROOT, get_settings
from tests.factories import frame_records
from tests.test_floor_plan import imported_modules
from training.data import build_training_table
from training.reference import backfill, bin_labels, build_reference
from training.train import HOLD_OUT, SEED
from worker.bundle import ModelBundle, load_bundle

ARTIFACTS = get_settings().artifacts_dir


@pytest.fixture(scope="module")
def reference() -> ModelReference:
    directory = ARTIFACTS / current_version(ARTIFACTS)
    loaded = load_reference(directory, read_metadata(directory))
    assert loaded is not None, "the committed bundle carries a reference"
    return loaded


@pytest.fixture(scope="module")
def held_out(bundle: ModelBundle) -> pd.DataFrame:
    """The held-out stops of the committed bundle, as training split them."""
    features, target, _ = build_training_table(seed=SEED)
    frame = build_frame(frame_records(features), bundle.spec)
    _, x_test, _, _ = train_test_split(frame, target, test_size=HOLD_OUT, random_state=SEED, stratify=target)
    held_out: pd.DataFrame = x_test
    return held_out


def canonical_counts(series: pd.Series) -> dict[str, int]:
    """Count values as the gateway stores them: booleans "true"/"false", integers in decimal."""
    text = series.map({False: "false", True: "true"}) if series.dtype == bool else series.astype(str)
    return {str(value): int(count) for value, count in text.value_counts().items()}


def age_reference() -> FeatureReference:
    edges = (23.0, 30.0, 61.0)
    return FeatureReference("SubjectAge", "bins", bin_labels(edges), edges, (0.25, 0.25, 0.25, 0.25))


def test_held_out_stops_have_not_drifted_from_training(
    reference: ModelReference, held_out: pd.DataFrame
) -> None:
    for name, feature in reference.features.items():
        assert psi(feature.shares, feature.bin_counts(canonical_counts(held_out[name]))) < 0.01, name


def test_all_stops_at_one_hour_drift_past_the_line(reference: ModelReference) -> None:
    hour = reference.features["hour"]
    assert psi(hour.shares, hour.bin_counts({"3": 1_000})) > DRIFT_LINE


def test_counts_in_the_reference_shares_give_a_psi_of_about_zero(reference: ModelReference) -> None:
    for feature in reference.features.values():
        assert psi(feature.shares, [round(share * 100_000) for share in feature.shares]) < 1e-3


def test_unknown_categories_are_counted_as_unseen(reference: ModelReference) -> None:
    statute = reference.features["StatuteReason"]
    counts = statute.bin_counts({"Speed Related": 5, "Jaywalking": 2, "speed related": 1})
    assert counts[statute.labels.index("Speed Related")] == 5
    assert counts[statute.labels.index(UNSEEN)] == 3
    assert sum(counts) == 8


def test_booleans_fold_into_false_true_and_unseen(reference: ModelReference) -> None:
    resident = reference.features["ResidentIndicator"]
    assert resident.labels == ("false", "true", UNSEEN)
    assert resident.bin_counts({"true": 4, "false": 3, "True": 1}) == [3, 4, 1]


def test_integers_fall_in_bins_whose_edges_are_inclusive_on_the_left() -> None:
    age = age_reference()
    assert age.labels == ("< 23", "23\u201329", "30\u201360", "\u2265 61")
    counts = age.bin_counts({"22": 1, "23": 2, "29": 3, "30": 4, "60": 5, "61": 6, "99": 7})
    assert counts == [1, 2 + 3, 4 + 5, 6 + 7]


def test_non_numeric_text_is_left_out_of_integer_bins() -> None:
    assert age_reference().bin_counts({"abc": 5, "": 1, "nan": 2, "40": 3}) == [0, 0, 3, 0]


def test_a_psi_of_no_observations_is_zero_and_of_mismatched_bins_an_error() -> None:
    assert psi([0.5, 0.5], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="2 expected shares but 3 actual counts"):
        psi([0.5, 0.5], [1, 2, 3])


def test_probability_counts_fill_every_bin() -> None:
    counts = proba_bin_counts({0: 3, PROBA_BINS - 1: 2, 7: 1})
    assert len(counts) == PROBA_BINS
    assert (counts[0], counts[7], counts[-1], sum(counts)) == (3, 1, 2, 6)


def test_integer_column_with_few_values_gets_one_bin_per_value() -> None:
    spec = FeatureSpec((FeatureColumn("hour", "integer", minimum=0, maximum=23),), target="y")
    features = pd.DataFrame({"hour": [5] * 50 + [6] * 30 + [7] * 20})
    built = build_reference(
        version="v", features=features, spec=spec, held_out_proba=np.full(10, 0.3), threshold=0.5, seed=1
    )
    hour = built.features["hour"]
    assert (hour.labels, hour.edges, hour.shares) == (("< 6", "6", "\u2265 7"), (6.0, 7.0), (0.5, 0.3, 0.2))
    assert built.positive_share == 0.0 and built.positive_share_range == (0.0, 0.0)
    assert built.proba_shares[6] == 1.0  # 0.3 * 20 = 6


def test_committed_bundle_has_a_reference_of_every_feature_in_spec_order(
    reference: ModelReference, bundle: ModelBundle
) -> None:
    assert reference.version == bundle.version
    assert list(reference.features) == bundle.spec.names
    for feature in reference.features.values():
        assert sum(feature.shares) == pytest.approx(1, abs=1e-5), feature.name
        assert all(share >= 0 for share in feature.shares)
    assert sum(reference.proba_shares) == pytest.approx(1, abs=1e-5)
    assert reference.training_rows + reference.held_out_rows == bundle.metadata["data"]["rows"]
    assert reference.held_out_rows == bundle.metadata["held_out"]["rows"]


def test_integer_features_have_training_decile_bins_with_short_labels(reference: ModelReference) -> None:
    for name in ("hour", "SubjectAge"):
        feature = reference.features[name]
        assert feature.kind == "bins" and 3 <= len(feature.labels) <= 10
        assert all(len(label) <= 7 for label in feature.labels)
        assert max(feature.shares) < 0.2, "deciles keep every bin near a tenth"


def test_positive_share_range_contains_the_held_out_positive_share(
    reference: ModelReference, bundle: ModelBundle
) -> None:
    low, high = reference.positive_share_range
    assert low < reference.positive_share < high
    assert reference.sample_rows == 500
    stored = bundle.metadata["held_out"]["metrics"]["positive_rate_predicted"]
    assert reference.positive_share == pytest.approx(stored, abs=1e-4)


def test_reference_survives_its_json_form(reference: ModelReference) -> None:
    assert ModelReference.from_dict(json.loads(json.dumps(reference.to_dict()))) == reference


def test_bundle_without_a_reference_still_loads_and_has_none(bundle_copy: Path) -> None:
    directory = bundle_copy / current_version(bundle_copy)
    (directory / REFERENCE_FILE).unlink()
    metadata = json.loads((directory / METADATA_FILE).read_text())
    del metadata["files"][REFERENCE_FILE]
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    assert load_bundle(bundle_copy).version == directory.name
    assert verify_bundle(bundle_copy) == directory.name
    assert load_reference(directory, read_metadata(directory)) is None


def test_tampered_reference_is_refused(bundle_copy: Path) -> None:
    directory = bundle_copy / current_version(bundle_copy)
    path = directory / REFERENCE_FILE
    path.write_text(path.read_text().replace('"Speed Related"', '"Speed related"'))
    with pytest.raises(BundleError, match=rf"{REFERENCE_FILE}: SHA-256 .* does not match"):
        verify_bundle(bundle_copy)
    with pytest.raises(BundleError, match=rf"{REFERENCE_FILE}: SHA-256 .* does not match"):
        load_reference(directory, read_metadata(directory))


def test_recorded_reference_that_is_missing_is_refused(bundle_copy: Path) -> None:
    directory = bundle_copy / current_version(bundle_copy)
    (directory / REFERENCE_FILE).unlink()
    with pytest.raises(BundleError, match=f"{REFERENCE_FILE} is missing"):
        verify_bundle(bundle_copy)


def test_the_gateway_can_read_references_without_numerical_libraries() -> None:
    heavy = {"sklearn", "pandas", "numpy", "joblib"}
    for module in ("monitoring/reference.py", "feature_spec.py"):
        imported = {name.split(".")[0] for name in imported_modules(PROJECT_ROOT / "core" / module)}
        assert imported.isdisjoint(heavy), module


def test_backfill_rebuilds_the_committed_reference_and_refuses_other_data(bundle_copy: Path) -> None:
    version = current_version(bundle_copy)
    directory = bundle_copy / version
    (directory / REFERENCE_FILE).unlink()
    metadata = json.loads((directory / METADATA_FILE).read_text())
    del metadata["files"][REFERENCE_FILE]
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    rebuilt = backfill(bundle_copy, version)
    committed = json.loads((ARTIFACTS / version / REFERENCE_FILE).read_text())
    assert rebuilt.to_dict() == committed
    assert load_reference(directory, json.loads((directory / METADATA_FILE).read_text())) == rebuilt

    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["data"]["rows"] = 1_000
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match="trained on 1000 rows"):
        backfill(bundle_copy, version)


def test_the_expected_positive_share_narrows_with_the_calls_it_rests_on() -> None:
    directory = ARTIFACTS / current_version(ARTIFACTS)
    reference = load_reference(directory, read_metadata(directory))
    assert reference is not None
    # On 500 calls it matches what 1,000 held-out samples of 500 rows gave in training (their 0.5th-99.5th).
    low, high = expected_share_range(reference, 500)
    assert low == pytest.approx(reference.positive_share_range[0], abs=0.01)
    assert high == pytest.approx(reference.positive_share_range[1], abs=0.01)
    # A busy day's window is held much closer; the held-out sample's own error keeps it from closing.
    day_low, day_high = expected_share_range(reference, 100_000)
    assert low < day_low < reference.positive_share < day_high < high
    assert day_high - day_low < 0.02
