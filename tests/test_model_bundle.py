"""The committed bundle: integrity checks before unpickling, reproducible metrics, spec and pipeline agree."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.feature_spec import (
    METADATA_FILE,
    PIPELINE_FILE,
    REFERENCE_FILE,
    SPEC_FILE,
    BundleError,
    FeatureSpec,
    current_version,
    load_feature_spec,
    read_metadata,
    sha256_of,
    verify_bundle,
)
from core.frames import build_frame
from core.monitoring.monitored_model import serving_model
from core.monitoring.reference import load_reference
from core.settings import Settings, get_settings
from tests.factories import frame_records, observation
from training.data import build_training_table
from training.evaluation import held_out_metrics
from training.train import HOLD_OUT, SEED, train
from worker.boosted_trees import CompiledTrees, compiled_trees
from worker.bundle import ModelBundle, TrainedVersionWarning, load_bundle
from worker.direct_encoding import (
    DirectEncoder,
    direct_encoders,
    probe_observations,
    unseen_category_probes,
)

ARTIFACTS = get_settings().artifacts_dir


def test_current_bundle_loads_with_version_and_threshold(bundle: ModelBundle) -> None:
    assert bundle.version == current_version(ARTIFACTS)
    assert 0 < bundle.threshold < 1
    assert bundle.spec.names[-2:] == ["hour", "day_of_week"]


def test_metadata_meets_the_business_bar(bundle: ModelBundle) -> None:
    metrics = bundle.metadata["held_out"]["metrics"]
    assert metrics["roc_auc"] >= 0.66
    assert metrics["precision"] >= 0.5


def test_metadata_records_provenance_latency_and_checksums_of_every_file(bundle: ModelBundle) -> None:
    meta = bundle.metadata
    assert set(meta["data"]["sampled_columns"]) | set(meta["data"]["real_columns"]) >= set(bundle.spec.names)
    assert meta["latency"]["one_row_ms"] > 0 and meta["latency"]["rows_1000_ms"] > 0
    assert "training_distributions" not in meta, "reference.json replaces it"
    assert set(meta["files"]) == {PIPELINE_FILE, SPEC_FILE, REFERENCE_FILE}
    assert meta["versions"]["scikit-learn"]


@pytest.mark.parametrize("name", [PIPELINE_FILE, SPEC_FILE, REFERENCE_FILE])
def test_tampered_file_is_refused_naming_the_file(bundle_copy: Path, name: str) -> None:
    target = bundle_copy / current_version(bundle_copy) / name
    target.write_bytes(target.read_bytes() + b"\n")
    for load in (load_bundle, verify_bundle):
        with pytest.raises(BundleError, match=rf"{name}: SHA-256 .* does not match"):
            load(bundle_copy)


def test_gateway_and_monitor_refuse_a_tampered_reference(bundle_copy: Path) -> None:
    target = bundle_copy / current_version(bundle_copy) / REFERENCE_FILE
    target.write_bytes(target.read_bytes().replace(b"0.", b"0.9", 1))
    with pytest.raises(BundleError, match=rf"{REFERENCE_FILE}: SHA-256 .* does not match"):
        serving_model(Settings(artifacts_dir=bundle_copy))


def test_file_without_recorded_checksum_is_refused(bundle_copy: Path) -> None:
    meta_path = bundle_copy / current_version(bundle_copy) / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    del meta["files"][PIPELINE_FILE]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="no checksum recorded"):
        load_bundle(bundle_copy)


def test_gateway_spec_load_also_verifies_the_checksum(bundle_copy: Path) -> None:
    spec_path = bundle_copy / current_version(bundle_copy) / SPEC_FILE
    spec_path.write_text(spec_path.read_text().replace("Stop Sign", "Stop sign"))
    with pytest.raises(BundleError, match=SPEC_FILE):
        load_feature_spec(bundle_copy)


def test_missing_current_pointer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="current is missing"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("pointed", ["../elsewhere", "/etc", "a/b", "..", "v..1", ".hidden", "x" * 65])
def test_current_pointer_naming_a_path_is_refused_saying_what_is_allowed(
    tmp_path: Path, pointed: str
) -> None:
    (tmp_path / "current").write_text(pointed + "\n")
    for load in (load_bundle, load_feature_spec, verify_bundle):
        with pytest.raises(BundleError, match="a bundle version is 1-64 letters, digits"):
            load(tmp_path)


@pytest.mark.parametrize("version", ["../elsewhere", "/etc", "a\\b", "v..1"])
def test_model_version_naming_a_path_is_refused(version: str) -> None:
    with pytest.raises(BundleError, match="a bundle version is 1-64 letters"):
        load_feature_spec(ARTIFACTS, version)
    with pytest.raises(ValidationError, match="MODEL_VERSION must be empty or 1-64 letters, digits"):
        Settings(model_version=version)


def test_training_refuses_a_version_name_the_loader_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="a bundle version is"):
        train(tmp_path, "../outside")
    assert list(tmp_path.parent.glob("outside")) == []


def test_pinned_bundle_loads_when_its_metadata_has_the_pinned_sha256(bundle_copy: Path) -> None:
    digest = sha256_of(bundle_copy / current_version(bundle_copy) / METADATA_FILE)
    assert load_bundle(bundle_copy, pinned_sha256=digest).version == current_version(bundle_copy)
    assert verify_bundle(bundle_copy, pinned_sha256=digest.upper()) == current_version(bundle_copy)
    assert Settings(model_sha256=digest.upper()).model_sha256 == digest


def test_bundle_rewritten_with_matching_checksums_is_refused_by_the_pin(bundle_copy: Path) -> None:
    directory = bundle_copy / current_version(bundle_copy)
    pinned = sha256_of(directory / METADATA_FILE)
    # Whoever can write the folder can change a file and record its new checksum beside it.
    spec_path = directory / SPEC_FILE
    spec_path.write_text(spec_path.read_text().replace("Stop Sign", "Stop sign"))
    meta = json.loads((directory / METADATA_FILE).read_text())
    meta["files"][SPEC_FILE] = sha256_of(spec_path)
    (directory / METADATA_FILE).write_text(json.dumps(meta))
    assert load_feature_spec(bundle_copy)  # the checksums in the folder agree with it
    for load in (load_bundle, load_feature_spec, verify_bundle):
        with pytest.raises(BundleError, match=f"does not match MODEL_SHA256 {pinned}"):
            load(bundle_copy, pinned_sha256=pinned)


@pytest.mark.parametrize("digest", ["abc", "g" * 64, "0" * 63, "0" * 65])
def test_model_sha256_must_be_64_hex_digits(digest: str) -> None:
    with pytest.raises(ValidationError, match="MODEL_SHA256 must be empty or 64 hex digits"):
        Settings(model_sha256=digest)


def test_other_scikit_learn_version_warns(bundle_copy: Path) -> None:
    meta_path = bundle_copy / current_version(bundle_copy) / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["versions"]["scikit-learn"] = "0.0.1"
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(TrainedVersionWarning, match="0.0.1"):
        load_bundle(bundle_copy)


@pytest.mark.slow  # predicts the whole training table
def test_loaded_pipeline_reproduces_stored_held_out_metrics(bundle: ModelBundle) -> None:
    features, target, _ = build_training_table(seed=SEED)
    frame = build_frame(frame_records(features), bundle.spec)
    _, x_test, _, y_test = train_test_split(
        frame, target, test_size=HOLD_OUT, random_state=SEED, stratify=target
    )
    metrics = held_out_metrics(y_test, bundle.predict_proba(x_test), bundle.threshold)
    stored = bundle.metadata["held_out"]["metrics"]
    for name in ("roc_auc", "precision", "recall"):
        assert metrics[name] == stored[name]


@pytest.mark.slow  # predicts the whole training table
def test_every_direct_way_gives_the_pipelines_probabilities_on_every_training_row(
    bundle: ModelBundle,
) -> None:
    assert bundle.encoder is not None and bundle.encoder.kind == "trees", "served by the fastest way"
    features, _, _ = build_training_table(seed=SEED)
    records = json.loads(features.to_json(orient="records"))  # dicts as the worker gets them, from JSON
    through_pipeline = bundle.predict_proba(build_frame(records, bundle.spec))
    ways = direct_encoders(bundle.pipeline)
    assert [way.kind for way in ways] == ["trees", "folded", "codes"]
    for way in ways:
        direct = replace(bundle, encoder=way).predict_observations(records)
        assert np.array_equal(direct, through_pipeline), way.kind


def assert_predicts_as_the_pipeline_on_probe_rows(bundle: ModelBundle) -> None:
    probes = probe_observations(bundle.spec)
    through_pipeline = bundle.predict_proba(build_frame(probes, bundle.spec))
    assert np.array_equal(bundle.predict_observations(probes), through_pipeline)


def _with_first_codes_swapped(encoder: DirectEncoder) -> DirectEncoder:
    first = encoder.columns[0]
    assert first.codes is not None
    swapped = dict(zip(first.codes, reversed(list(first.codes.values())), strict=True))
    return replace(encoder, columns=(replace(first, codes=swapped), *encoder.columns[1:]))


@pytest.mark.slow  # predicts the whole training table
def test_direct_encoding_that_disagrees_with_the_pipeline_is_not_used(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def all_swapped(pipeline: object) -> list[DirectEncoder]:
        return [_with_first_codes_swapped(way) for way in direct_encoders(pipeline)]

    monkeypatch.setattr("worker.bundle.direct_encoders", all_swapped)
    bundle = load_bundle(bundle_copy)
    assert bundle.encoder is None
    assert_predicts_as_the_pipeline_on_probe_rows(bundle)


@pytest.mark.slow  # predicts the whole training table
def test_a_faster_way_that_disagrees_gives_way_to_the_next(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def trees_wrong(pipeline: object) -> list[DirectEncoder]:
        trees, *others = direct_encoders(pipeline)
        return [_with_first_codes_swapped(trees), *others]

    monkeypatch.setattr("worker.bundle.direct_encoders", trees_wrong)
    bundle = load_bundle(bundle_copy)
    assert bundle.encoder is not None and bundle.encoder.kind == "folded"
    assert_predicts_as_the_pipeline_on_probe_rows(bundle)


@pytest.mark.slow  # predicts the whole training table
def test_a_way_that_only_errs_on_categories_never_seen_is_not_used(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unseen_as_zero(pipeline: object) -> list[DirectEncoder]:
        trees, *others = direct_encoders(pipeline)
        wrong = tuple(replace(column, unknown=0.0) if column.codes else column for column in trees.columns)
        return [replace(trees, columns=wrong), *others]

    monkeypatch.setattr("worker.bundle.direct_encoders", unseen_as_zero)
    assert load_bundle(bundle_copy).encoder.kind == "folded"  # type: ignore[union-attr]


def test_the_classifiers_own_category_encoding_is_folded_into_the_direct_codes(bundle: ModelBundle) -> None:
    # The boosted trees re-encode their categorical columns inside predict; served rows skip that second pass.
    # Then its trees are called directly, without scikit-learn's Python loop around them.
    assert bundle.encoder is not None
    served, fitted = bundle.encoder.classifier, bundle.pipeline.steps[-1][1]
    assert isinstance(served, CompiledTrees)
    assert fitted._preprocessor is not None, "the pipeline itself is left as it was fitted"
    fitted_nodes = [predictor.nodes for iteration in fitted._predictors for predictor in iteration]
    assert len(served.trees) == len(fitted_nodes) == fitted.n_iter_
    assert all(nodes is own for (nodes, _), own in zip(served.trees, fitted_nodes, strict=True)), (
        "the trees are shared, not copied"
    )


@pytest.mark.slow  # predicts the whole training table
def test_only_a_binary_classifier_reading_its_input_as_given_is_called_tree_by_tree(
    bundle: ModelBundle,
) -> None:
    fitted = bundle.pipeline.steps[-1][1]
    assert compiled_trees(fitted) is None, "it re-encodes its categories: not as given"
    generator = np.random.default_rng(7)
    rows = generator.normal(size=(400, 3))
    labels = (rows[:, 0] + rows[:, 1] * rows[:, 2] > 0).astype(int)
    three_classes = HistGradientBoostingClassifier(max_iter=3).fit(rows, labels + (rows[:, 2] > 1))
    assert compiled_trees(three_classes) is None
    assert compiled_trees(LogisticRegression().fit(rows, labels)) is None
    two_classes = HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=1).fit(rows, labels)
    assert min(p.get_n_leaf_nodes() for iteration in two_classes._predictors for p in iteration) > 2
    trees = compiled_trees(two_classes)
    assert trees is not None
    unseen = generator.normal(size=(500, 3))
    unseen[::7, 1] = np.nan  # missing values take each split's learned side
    assert np.array_equal(trees.predict_proba(unseen), two_classes.predict_proba(unseen))


def test_without_folding_the_classifier_gets_the_codes_as_the_pipeline_gives_them(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.direct_encoding._folded_into", lambda *_: None)
    bundle = load_bundle(bundle_copy)
    assert bundle.encoder is not None and bundle.encoder.kind == "codes", "still direct, without the fold"
    assert bundle.encoder.classifier is bundle.pipeline.steps[-1][1]
    assert_predicts_as_the_pipeline_on_probe_rows(bundle)


def test_a_category_the_model_never_saw_gets_the_pipelines_probability(bundle: ModelBundle) -> None:
    unseen = [observation(StatuteReason="Not a statute"), observation(day_of_week="Someday", hour=3)]
    through_pipeline = bundle.predict_proba(pd.DataFrame(unseen)[bundle.spec.names])
    assert np.array_equal(bundle.predict_observations(unseen), through_pipeline)


def test_unseen_category_probes_hold_one_unknown_value_each(bundle: ModelBundle) -> None:
    categories = [column for column in bundle.spec.columns if column.kind == "category"]
    probes = unseen_category_probes(bundle.spec)
    assert len(probes) == len(categories)
    for probe, column in zip(probes, categories, strict=True):
        unknown = [c.name for c in categories if probe[c.name] not in c.allowed]
        assert unknown == [column.name]


def test_boosted_trees_without_categorical_features_are_called_tree_by_tree_without_folding() -> None:
    rows = [observation(hour=h, SubjectAge=20 + h) for h in range(24)]
    numbers = ["hour", "SubjectAge"]
    pipeline = Pipeline(
        [
            ("encode", ColumnTransformer([("numbers", "passthrough", numbers)])),
            ("classify", HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=2)),
        ]
    ).fit(pd.DataFrame(rows)[numbers], [h % 2 for h in range(24)])
    ways = direct_encoders(pipeline)
    assert [way.kind for way in ways] == ["trees", "codes"]
    assert ways[1].classifier is pipeline.steps[-1][1]
    for way in ways:
        assert np.array_equal(way.predict_proba(rows), pipeline.predict_proba(pd.DataFrame(rows)[numbers]))


def test_probe_rows_take_every_allowed_value_of_every_column(bundle: ModelBundle) -> None:
    probes = probe_observations(bundle.spec)
    for column in bundle.spec.columns:
        seen = {probe[column.name] for probe in probes}
        if column.kind == "category":
            assert seen == set(column.allowed)
        elif column.kind == "boolean":
            assert seen == {True, False}
        else:
            assert seen == set(range(column.minimum or 0, (column.maximum or 0) + 1))


def test_pipeline_of_another_shape_is_predicted_through_scikit_learn() -> None:
    rows = [observation(hour=h) for h in range(24)]
    spec_columns = ["hour", "SubjectAge"]
    pipeline = Pipeline(
        [
            ("encode", ColumnTransformer([("scale", StandardScaler(), spec_columns)])),
            ("classify", LogisticRegression()),
        ]
    ).fit(pd.DataFrame(rows)[spec_columns], [h % 2 for h in range(24)])
    assert direct_encoders(pipeline) == []


def test_schema_categories_are_the_pipelines_categories(bundle: ModelBundle) -> None:
    encoder = bundle.pipeline.named_steps["encode"].named_transformers_["categories"]
    learned = dict(zip(encoder.feature_names_in_, encoder.categories_, strict=True))
    spec_categories = {c.name: list(c.allowed) for c in bundle.spec.columns if c.kind == "category"}
    assert {name: sorted(values.tolist()) for name, values in learned.items()} == spec_categories


def test_spec_column_order_is_the_pipelines(bundle: ModelBundle) -> None:
    encoder = bundle.pipeline.named_steps["encode"]
    assert list(encoder.feature_names_in_) == bundle.spec.names


def test_spec_bounds_cover_the_documented_ranges(feature_spec: FeatureSpec) -> None:
    bounds = {c.name: (c.minimum, c.maximum) for c in feature_spec.columns if c.kind == "integer"}
    assert bounds == {"hour": (0, 23), "SubjectAge": (10, 100)}


@pytest.mark.parametrize("rows", [1, 10_000])
def test_build_frame_gives_trained_dtypes_for_one_row_or_many(bundle: ModelBundle, rows: int) -> None:
    frame = build_frame([observation(hour=h % 24) for h in range(rows)], bundle.spec)
    assert list(frame.columns) == bundle.spec.names
    assert frame["hour"].dtype == np.int64 and frame["ResidentIndicator"].dtype == bool
    proba = bundle.predict_proba(frame)
    assert proba.shape == (rows,) and ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.slow  # trains the model twice
def test_training_is_reproducible_and_can_add_a_version_beside_the_current(
    bundle: ModelBundle, bundle_copy: Path
) -> None:

    before = current_version(bundle_copy)
    directory = train(bundle_copy, "retrained", make_current=False)
    assert current_version(bundle_copy) == before
    retrained = json.loads((directory / METADATA_FILE).read_text())
    assert retrained["held_out"]["metrics"] == bundle.metadata["held_out"]["metrics"]
    assert retrained["threshold"] == bundle.metadata["threshold"]
    assert load_bundle(bundle_copy, "retrained").version == "retrained"
    # A new bundle carries the same reference as the one backfilled into the committed bundle.
    new, committed = (load_reference(d, read_metadata(d)) for d in (directory, bundle_copy / before))
    assert new is not None and committed is not None
    assert replace(new, version=before) == committed
