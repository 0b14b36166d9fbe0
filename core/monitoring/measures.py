"""Watch the model: inputs against training (PSI per feature), calls against training, live precision, recall.

One measure serves the periodic monitor task (which stores it), GET /monitoring, the dashboard and /metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from core.monitoring.reference import (
    DRIFT_LINE,
    PROBA_BINS,
    ModelReference,
    proba_bin_counts,
    psi,
)
from core.storage.monitoring import (
    ServedCalls,
    SnapshotRow,
    feature_value_counts,
    labelled_outcomes,
    served_calls,
)
from core.storage.shadow import ShadowCalls, shadow_calls, shadow_outcomes

# The figures a monitor run stores (monitor_snapshots.figure).
FEATURE_PSI, PROBA_PSI, POSITIVE_SHARE = "feature_psi", "proba_psi", "positive_share"
# Stored at every run, whatever else is: the run itself, with the predictions of its window.
MONITOR_RUN = "run"
# The business bar on the precision of positive calls, for a bundle whose metadata names none.
DEFAULT_PRECISION_BAR = 0.5
# Two-sided 99 %: the share of positive calls leaves its expected range by chance once in a hundred windows.
Z_99 = 2.576


@dataclass(frozen=True)
class FeatureDrift:
    """One input feature over the window against training: its bins' shares on both sides and their PSI."""

    feature: str
    # None: fewer observations than the minimum in the window, where a PSI would be noise.
    psi: float | None
    observations: int
    labels: tuple[str, ...]
    training: tuple[float, ...]
    served: tuple[float, ...]


@dataclass(frozen=True)
class VersionQuality:
    """Live precision and recall of one model version on the true outcomes received."""

    model_version: str
    labelled: int
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int

    @property
    def labelled_positive_calls(self) -> int:
        """The labels precision rests on: those of the observations the model called positive."""
        return self.true_positive + self.false_positive

    @property
    def precision(self) -> float | None:
        calls = self.labelled_positive_calls
        return self.true_positive / calls if calls else None

    @property
    def recall(self) -> float | None:
        found = self.true_positive + self.false_negative
        return self.true_positive / found if found else None


@dataclass(frozen=True)
class VersionCalls:
    """What one model version answered in the window: how many, the share called positive, the histogram."""

    model_version: str
    predictions: int
    positive_share: float
    proba_shares: tuple[float, ...]
    # Against this version's own held-out calls (None: no reference for it, or under the minimum).
    training_share: float | None = None
    expected_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class MonitoringReport:
    """Every model figure over one window, with the training side each is compared with."""

    window_s: int
    reference_version: str | None
    min_observations: int
    precision_bar: float
    drift_line: float
    drift: list[FeatureDrift]
    # Probabilities of every version in the window against the held-out ones (None under the minimum).
    proba_psi: float | None
    proba_training: tuple[float, ...]
    proba_served: tuple[float, ...]
    predictions: int
    positive_share_training: float | None
    # Where the serving version's share stays for its number of calls (expected_share_range); None: no calls.
    positive_share_range: tuple[float, float] | None
    calls: list[VersionCalls]
    quality: list[VersionQuality]
    quality_in_window: list[VersionQuality]
    # Shadow versions: their calls on the window's observations, beside what served, and their live quality.
    shadow_calls: list[ShadowCalls]
    shadow_quality: list[VersionQuality]
    shadow_quality_in_window: list[VersionQuality]


def expected_share_range(reference: ModelReference, predictions: int) -> tuple[float, float]:
    """Return where the share of positive calls over this many predictions stays if the model calls as it did
    on held-out data: the held-out share, give or take the sampling error of both counts (99 %).

    A fixed range would be too wide for a busy day's window and too narrow for a quiet hour's.
    """
    share = reference.positive_share
    spread = Z_99 * math.sqrt(share * (1 - share) * (1 / max(predictions, 1) + 1 / reference.held_out_rows))
    return max(0.0, share - spread), min(1.0, share + spread)


def version_quality(outcomes: dict[str, dict[str, int]]) -> list[VersionQuality]:
    """Return the quality of each model version from its counted outcomes."""
    return [
        VersionQuality(model_version=version, labelled=sum(counts.values()), **counts)
        for version, counts in sorted(outcomes.items())
    ]


def _shares(counts: list[int]) -> tuple[float, ...]:
    total = sum(counts)
    return tuple(count / total if total else 0.0 for count in counts)


def feature_drift(
    value_counts: dict[str, dict[str, int]], reference: ModelReference, min_observations: int
) -> list[FeatureDrift]:
    """Fold each feature's counted values into its reference bins and compute the PSI where enough arrived."""
    drift = []
    for name, feature in reference.features.items():
        counts = feature.bin_counts(value_counts.get(name, {}))
        observations = sum(counts)
        drift.append(
            FeatureDrift(
                feature=name,
                psi=psi(feature.shares, counts) if observations >= min_observations else None,
                observations=observations,
                labels=feature.labels,
                training=feature.shares,
                served=_shares(counts),
            )
        )
    return drift


def measure(
    *,
    conn: Connection,
    reference: ModelReference | None,
    window_s: int,
    min_observations: int,
    precision_bar: float,
    count_features: bool = True,
    reference_of: Callable[[str], ModelReference | None] | None = None,
) -> MonitoringReport:
    """Measure every model figure over the window; without a reference, only the live quality and calls.

    reference_of: another version's reference (None: unknown), so that each version's share of positive calls
    is set beside its own held-out share; a canary is not judged by the stable version's reference.

    count_features=False leaves the drift out: the count of every feature's values is the one query that
    reads each observation of the window (seconds at a million), so pages take it from the monitor's snapshot.
    """
    calls = served_calls(conn=conn, window_s=window_s, bins=PROBA_BINS)
    bins_of = {served.model_version: proba_bin_counts(served.proba_counts) for served in calls}
    all_bins = [sum(counts) for counts in zip(*bins_of.values(), strict=True)] if calls else [0] * PROBA_BINS
    predictions = sum(all_bins)
    drift: list[FeatureDrift] = []
    proba_psi = None
    if reference is not None:
        if count_features:
            counts = feature_value_counts(conn=conn, window_s=window_s)
            drift = feature_drift(counts, reference, min_observations)
        if predictions >= min_observations:
            proba_psi = psi(reference.proba_shares, all_bins)
    serving = [c for c in calls if reference is not None and c.model_version == reference.version]

    def own_reference(version: str) -> ModelReference | None:
        if reference is not None and version == reference.version:
            return reference
        return reference_of(version) if reference_of is not None else None

    return MonitoringReport(
        window_s=window_s,
        reference_version=reference.version if reference else None,
        min_observations=min_observations,
        precision_bar=precision_bar,
        drift_line=DRIFT_LINE,
        drift=drift,
        proba_psi=proba_psi,
        proba_training=reference.proba_shares if reference else (),
        proba_served=_shares(all_bins),
        predictions=predictions,
        positive_share_training=reference.positive_share if reference else None,
        positive_share_range=(
            expected_share_range(reference, serving[0].predictions) if reference and serving else None
        ),
        calls=[
            _version_calls(
                served, bins_of[served.model_version], own_reference(served.model_version), min_observations
            )
            for served in calls
        ],
        quality=version_quality(labelled_outcomes(conn=conn)),
        quality_in_window=version_quality(labelled_outcomes(conn=conn, window_s=window_s)),
        shadow_calls=shadow_calls(conn=conn, window_s=window_s),
        shadow_quality=version_quality(shadow_outcomes(conn=conn)),
        shadow_quality_in_window=version_quality(shadow_outcomes(conn=conn, window_s=window_s)),
    )


def _version_calls(
    served: ServedCalls, bins: list[int], reference: ModelReference | None, min_observations: int
) -> VersionCalls:
    judged = reference is not None and served.predictions >= min_observations
    return VersionCalls(
        model_version=served.model_version,
        predictions=served.predictions,
        positive_share=served.positive_share,
        proba_shares=_shares(bins),
        training_share=reference.positive_share if reference else None,
        expected_range=expected_share_range(reference, served.predictions) if judged and reference else None,
    )


def drift_from_snapshot(snapshot: list[SnapshotRow], reference: ModelReference) -> list[FeatureDrift]:
    """Return each feature's PSI as the monitor last stored it (None where it stored none)."""
    stored = {row.subject: row for row in snapshot if row.figure == FEATURE_PSI}
    return [
        FeatureDrift(
            feature=name,
            psi=stored[name].value if name in stored else None,
            observations=stored[name].observations if name in stored else 0,
            labels=feature.labels,
            training=feature.shares,
            served=(),
        )
        for name, feature in reference.features.items()
    ]


def snapshot_rows(report: MonitoringReport, taken_at: datetime) -> list[SnapshotRow]:
    """Return what a monitor run stores of a report: the run, each PSI it could compute, the positive share.

    A positive share under the minimum of predictions is left out, like a PSI: it would be noise.
    """

    def row(figure: str, subject: str, value: float, observations: int) -> SnapshotRow:
        return SnapshotRow(
            taken_at=taken_at,
            window_s=report.window_s,
            figure=figure,
            subject=subject,
            value=value,
            observations=observations,
        )

    rows = [row(MONITOR_RUN, report.reference_version or "", 0.0, report.predictions)]
    rows += [row(FEATURE_PSI, d.feature, d.psi, d.observations) for d in report.drift if d.psi is not None]
    if report.proba_psi is not None:
        rows.append(row(PROBA_PSI, "proba", report.proba_psi, report.predictions))
    # Only the serving version's share: the reference (and its range) belongs to that bundle, not to the
    # versions that served earlier in the window.
    rows += [
        row(POSITIVE_SHARE, c.model_version, c.positive_share, c.predictions)
        for c in report.calls
        if c.predictions >= report.min_observations and c.model_version == report.reference_version
    ]
    return rows
