"""Shared fixtures: the committed model bundle and the schemas generated from it."""

from __future__ import annotations

import pytest

from worker.bundle import FeatureSpec, ModelBundle, load_bundle, load_feature_spec
from worker.schemas import RequestSchemas, request_schemas
from worker.settings import get_settings


@pytest.fixture(scope="session")
def feature_spec() -> FeatureSpec:
    return load_feature_spec(get_settings().artifacts_dir)


@pytest.fixture(scope="session")
def bundle() -> ModelBundle:
    return load_bundle(get_settings().artifacts_dir)


@pytest.fixture(scope="session")
def schemas(feature_spec: FeatureSpec) -> RequestSchemas:
    return request_schemas(feature_spec)
