"""During a canary, each version's share of positive calls is judged by its own held-out share.

The monitoring measure on a SQLite file: 600 predictions by each of three versions, every one a positive
call: the stable version (held out: 27 % positive), a canary that called 99.5 % positive on held-out rows, and
a version no bundle describes any more.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.feature_spec import bundle_path, read_metadata
from core.monitoring.measures import expected_share_range, measure
from core.monitoring.reference import ModelReference, load_reference
from core.settings import get_settings
from core.storage.engine import make_engine
from core.storage.measurement import insert_predicted
from core.storage.migrate import upgrade_to_head
from core.storage.records import PredictionResult, utc_now
from gateway.monitoring.responses import monitoring_answer
from tests.factories import new_id, observation

STABLE, CANARY, UNKNOWN = "2026.11.28", "2026.12.01", "2025.01.01"
ROWS = 600


@pytest.fixture
def reference() -> ModelReference:
    directory = bundle_path(get_settings().artifacts_dir)
    found = load_reference(directory, read_metadata(directory))
    assert found is not None
    return found


def test_each_version_is_judged_against_its_own_held_out_share(
    tmp_path: Path, reference: ModelReference
) -> None:
    stable = replace(reference, version=STABLE, positive_share=0.27)
    canary = replace(reference, version=CANARY, positive_share=0.995)  # it calls nearly every stop positive
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for version in (STABLE, CANARY, UNKNOWN):
                for _ in range(ROWS):
                    insert_predicted(
                        conn=conn,
                        observation_id=new_id(version),
                        observation=observation(),
                        result=PredictionResult(id="", proba=0.9, prediction=True),
                        model_version=version,
                        now=utc_now(),
                    )
        with engine.connect() as conn:
            report = measure(
                conn=conn,
                reference=stable,
                window_s=3600,
                min_observations=500,
                precision_bar=0.5,
                count_features=False,
                reference_of={CANARY: canary}.get,
            )
    finally:
        engine.dispose()

    calls = {c.model_version: c for c in report.calls}
    assert (calls[STABLE].training_share, calls[STABLE].expected_range) == (
        0.27,
        expected_share_range(stable, ROWS),
    )
    assert (calls[CANARY].training_share, calls[CANARY].expected_range) == (
        0.995,
        expected_share_range(canary, ROWS),
    )
    assert (calls[UNKNOWN].training_share, calls[UNKNOWN].expected_range) == (None, None)
    judged = monitoring_answer(report, STABLE)["positive_share"]["by_version"]
    # All positive: far off for the stable version, as expected of the canary; no verdict without a reference.
    assert {v: judged[v]["in_training_range"] for v in (STABLE, CANARY, UNKNOWN)} == {
        STABLE: False,
        CANARY: True,
        UNKNOWN: None,
    }
