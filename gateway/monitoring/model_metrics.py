"""The model's figures on /metrics, read at scrape time: the monitor's snapshot, live labels, the rollout."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from core.monitoring.measures import (
    FEATURE_PSI,
    POSITIVE_SHARE,
    PROBA_PSI,
    VersionQuality,
    expected_share_range,
    version_quality,
)
from core.monitoring.monitored_model import ServingModel
from core.rollout.state import Rollout
from core.storage.monitoring import labelled_outcomes, latest_snapshot

log = logging.getLogger(__name__)


class ModelStateCollector(Collector):
    """Drift and positive share from the monitor's latest snapshot; live precision and recall from the labels.

    A figure the monitor could not compute (too few observations, no reference) is absent, not zero.
    """

    def __init__(self, *, engine: Engine, model: ServingModel) -> None:
        self._engine = engine
        self._model = model

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._engine.connect() as conn:
                taken_at, snapshot = latest_snapshot(conn=conn)
                quality = version_quality(labelled_outcomes(conn=conn))
        except (
            Exception
        ):  # a scrape must answer even when the database is down (service_dependency_up says so)
            log.warning("metrics: model figures unreadable", exc_info=True)
            return
        feature_psi = GaugeMetricFamily(
            "model_feature_psi",
            "PSI of an input feature over the monitor's window against training",
            labels=["feature"],
        )
        positive_share = GaugeMetricFamily(
            "model_positive_share",
            "Share of positive calls over the monitor's window",
            labels=["model_version"],
        )
        for row in snapshot:
            if row.figure == FEATURE_PSI:
                feature_psi.add_metric([row.subject], row.value)
            elif row.figure == POSITIVE_SHARE:
                positive_share.add_metric([row.subject], row.value)
            elif row.figure == PROBA_PSI:
                yield GaugeMetricFamily(
                    "model_proba_psi",
                    "PSI of the predicted probabilities against held-out data",
                    value=row.value,
                )
        yield feature_psi
        yield positive_share
        if taken_at is not None:
            yield GaugeMetricFamily(
                "model_monitor_last_run_timestamp_seconds",
                "When the model monitor last stored its figures (Unix time)",
                value=taken_at.timestamp(),
            )
        yield from self._quality(quality)
        yield GaugeMetricFamily(
            "model_precision_bar", "The precision positive calls must reach (the serving bundle's bar)",
            value=self._model.precision_bar,
        )  # fmt: skip
        # Only the serving version's share is stored; its expected range depends on the calls it rests on.
        share = next((row for row in snapshot if row.figure == POSITIVE_SHARE), None)
        reference = self._model.reference
        if reference is not None and share is not None:
            training = GaugeMetricFamily(
                "model_training_positive_share",
                "Where the positive-call share of the monitor's window stays (99 %) if the model calls as on "
                "held-out data",
                labels=["bound"],
            )
            low, high = expected_share_range(reference, share.observations)
            training.add_metric(["low"], low)
            training.add_metric(["high"], high)
            yield training

    @staticmethod
    def _quality(quality: list[VersionQuality]) -> Iterator[GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(name, description, labels=["model_version"])
            for name, description in (
                ("model_live_precision", "Precision of positive calls on the true outcomes received"),
                (
                    "model_live_recall",
                    "Share of real positives the model called, on the true outcomes received",
                ),
                ("model_labelled_outcomes", "True outcomes received"),
                (
                    "model_labelled_positive_calls",
                    "True outcomes received for positive calls (precision's base)",
                ),
            )
        }
        for version in quality:
            labels = [version.model_version]
            if version.precision is not None:
                families["model_live_precision"].add_metric(labels, version.precision)
            if version.recall is not None:
                families["model_live_recall"].add_metric(labels, version.recall)
            families["model_labelled_outcomes"].add_metric(labels, version.labelled)
            families["model_labelled_positive_calls"].add_metric(labels, version.labelled_positive_calls)
        yield from families.values()


class RolloutCollector(Collector):
    """What serves, as the gateway last read it: each version's role and its percent of the ids."""

    def __init__(self, rollout: Rollout) -> None:
        self._rollout = rollout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rollout = self._rollout
        serving = GaugeMetricFamily(
            "model_rollout_percent",
            "Percent of the ids a model version serves, by its role (a shadow serves none: 0)",
            labels=["model_version", "role"],
        )
        serving.add_metric([rollout.stable_version, "stable"], 100 - rollout.canary_percent)
        if rollout.canary_version is not None:
            serving.add_metric([rollout.canary_version, "canary"], rollout.canary_percent)
        if rollout.shadow_version is not None:
            serving.add_metric([rollout.shadow_version, "shadow"], 0)
        yield serving
