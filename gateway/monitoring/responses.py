"""The answer of GET /monitoring: the model's figures over a window, each beside its training side."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from core.monitoring.measures import MonitoringReport, VersionQuality
from core.monitoring.reference import PROBA_BINS
from gateway.responses import VersionPerformanceSchema


class BinSchema(Schema):
    """One bin of a distribution: its label, its share in training and its share served in the window."""

    label = fields.String(required=True)
    training = fields.Float(required=True, allow_none=True)
    served = fields.Float(required=True)


class FeatureDriftSchema(Schema):
    """One input feature over the window against training."""

    psi = fields.Float(
        required=True, allow_none=True, metadata={"description": "null: fewer observations than the minimum"}
    )
    drifted = fields.Boolean(required=True, metadata={"description": "PSI above the drift line"})
    observations = fields.Integer(required=True)
    bins = fields.List(fields.Nested(BinSchema), required=True)


class ProbabilitiesSchema(Schema):
    """The predicted probabilities in the window against the held-out ones, in 20 bins."""

    psi = fields.Float(required=True, allow_none=True)
    predictions = fields.Integer(required=True)
    bins = fields.List(fields.Nested(BinSchema), required=True)


class VersionCallsSchema(Schema):
    """Positive calls of one model version in the window, beside its own held-out share and range."""

    predictions = fields.Integer(required=True)
    share = fields.Float(required=True)
    training = fields.Float(
        required=True, allow_none=True, metadata={"description": "its held-out share (null: no reference)"}
    )
    training_range = fields.List(fields.Float(), required=True, allow_none=True)
    in_training_range = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={"description": "null: no reference for this version, or under the minimum"},
    )


class PositiveShareSchema(Schema):
    """The share of positive calls: on held-out data, its range there, and per version in the window."""

    training = fields.Float(required=True, allow_none=True)
    training_range = fields.List(fields.Float(), required=True, allow_none=True)
    by_version = fields.Dict(keys=fields.String(), values=fields.Nested(VersionCallsSchema), required=True)


class VersionQualitySchema(Schema):
    """Live quality of one model version: on every label received, and on those received in the window."""

    all = fields.Nested(VersionPerformanceSchema, required=True)
    window = fields.Nested(VersionPerformanceSchema, required=True, allow_none=True)


class ShadowVersionSchema(Schema):
    """A shadow version beside what served: its calls on the window's observations, its live quality."""

    predictions = fields.Integer(required=True)
    share = fields.Float(required=True, allow_none=True, metadata={"description": "share of positive calls"})
    agreement = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "share of its calls equal to the served version's (null: none)"},
    )
    quality = fields.Nested(VersionQualitySchema, required=True, allow_none=True)


class MonitoringSchema(Schema):
    """Every model figure over one window."""

    window_s = fields.Integer(required=True)
    model_version = fields.String(required=True)
    reference = fields.Boolean(required=True, metadata={"description": "false: the bundle has no reference"})
    min_observations = fields.Integer(required=True)
    drift_line = fields.Float(required=True)
    precision_bar = fields.Float(required=True)
    features = fields.Dict(keys=fields.String(), values=fields.Nested(FeatureDriftSchema), required=True)
    probabilities = fields.Nested(ProbabilitiesSchema, required=True)
    positive_share = fields.Nested(PositiveShareSchema, required=True)
    quality = fields.Dict(keys=fields.String(), values=fields.Nested(VersionQualitySchema), required=True)
    shadow = fields.Dict(keys=fields.String(), values=fields.Nested(ShadowVersionSchema), required=True)


def performance_fields(quality: VersionQuality) -> dict[str, Any]:
    """Return one version's confusion counts, precision and recall, as VersionPerformanceSchema dumps them."""
    return {
        "labelled": quality.labelled,
        "true_positive": quality.true_positive,
        "false_positive": quality.false_positive,
        "false_negative": quality.false_negative,
        "true_negative": quality.true_negative,
        "precision": quality.precision,
        "recall": quality.recall,
    }


def monitoring_answer(report: MonitoringReport, model_version: str) -> dict[str, Any]:
    """Return the report as GET /monitoring answers it."""
    low_high = report.positive_share_range
    in_window = {q.model_version: q for q in report.quality_in_window}
    step = 1 / PROBA_BINS
    training = report.proba_training or (None,) * PROBA_BINS
    answer: dict[str, Any] = monitoring_schema.dump(
        {
            "window_s": report.window_s,
            "model_version": model_version,
            "reference": report.reference_version is not None,
            "min_observations": report.min_observations,
            "drift_line": report.drift_line,
            "precision_bar": report.precision_bar,
            "features": {
                d.feature: {
                    "psi": d.psi,
                    "drifted": d.psi is not None and d.psi > report.drift_line,
                    "observations": d.observations,
                    "bins": [
                        {"label": label, "training": t, "served": s}
                        for label, t, s in zip(d.labels, d.training, d.served, strict=True)
                    ],
                }
                for d in report.drift
            },
            "probabilities": {
                "psi": report.proba_psi,
                "predictions": report.predictions,
                "bins": [
                    {"label": f"{n * step:.2f}-{(n + 1) * step:.2f}", "training": t, "served": s}
                    for n, (t, s) in enumerate(zip(training, report.proba_served, strict=True))
                ],
            },
            "positive_share": {
                "training": report.positive_share_training,
                "training_range": list(low_high) if low_high else None,
                "by_version": {
                    c.model_version: {
                        "predictions": c.predictions,
                        "share": c.positive_share,
                        "training": c.training_share,
                        "training_range": list(c.expected_range) if c.expected_range else None,
                        "in_training_range": (
                            c.expected_range[0] <= c.positive_share <= c.expected_range[1]
                            if c.expected_range
                            else None
                        ),
                    }
                    for c in report.calls
                },
            },
            "quality": {
                q.model_version: {
                    "all": performance_fields(q),
                    "window": performance_fields(in_window[q.model_version])
                    if q.model_version in in_window
                    else None,
                }
                for q in report.quality
            },
            "shadow": _shadow_versions(report),
        }
    )
    return answer


def _shadow_versions(report: MonitoringReport) -> dict[str, Any]:
    calls = {c.model_version: c for c in report.shadow_calls}
    quality = {q.model_version: q for q in report.shadow_quality}
    in_window = {q.model_version: q for q in report.shadow_quality_in_window}
    shadows: dict[str, Any] = {}
    for version in sorted(calls.keys() | quality.keys()):
        made = calls.get(version)
        predictions = made.predictions if made is not None else 0
        shadows[version] = {
            "predictions": predictions,
            "share": made.positive_calls / predictions if made is not None and predictions else None,
            "agreement": made.agreeing / predictions if made is not None and predictions else None,
            "quality": {
                "all": performance_fields(quality[version]),
                "window": performance_fields(in_window[version]) if version in in_window else None,
            }
            if version in quality
            else None,
        }
    return shadows


monitoring_schema = MonitoringSchema()
