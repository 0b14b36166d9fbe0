"""The promotion gate: score a candidate bundle beside the serving one; refuse it below its precision bar.

Both bundles are scored on the same rows: the candidate's held-out split, re-derived from the data files as
training derived it, and the labelled outcomes the service has received so far.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from core.feature_spec import BundleError, bundle_path, current_version, is_version_name
from core.frames import build_frame
from core.rollout.state import Rollout
from core.settings import get_settings
from core.storage.engine import make_engine
from core.storage.labels import LabelledObservation, labelled_observations
from core.storage.rollouts import read_rollout
from training.data import DATA_DIR, build_training_table, held_out_split
from training.evaluation import PRECISION_BAR
from training.promotion_report import (
    DIGITS,
    BundleFigures,
    PromotionReport,
    Scores,
    render_table,
    report_as_dict,
)
from worker.bundle import ModelBundle, load_bundle

MIN_LABELLED = 50
LABELLED_LIMIT = 100_000  # the most recent labels: enough to judge on, bounded in memory
PROMOTABLE, REFUSED = 0, 1  # argparse exits 2 on a usage error


def score(y_true: Sequence[bool] | pd.Series, proba: np.ndarray, threshold: float) -> Scores:
    """Return ROC AUC, and precision and recall of the calls at threshold."""
    truth = np.asarray(y_true, dtype=bool)
    calls = proba >= threshold
    both_classes = 0 < int(truth.sum()) < len(truth)
    return Scores(
        rows=len(truth),
        roc_auc=float(roc_auc_score(truth, proba)) if both_classes else None,
        precision=float(precision_score(truth, calls, zero_division=0)),
        recall=float(recall_score(truth, calls, zero_division=0)),
        positive_calls=int(calls.sum()),
    )


@dataclass(frozen=True)
class ServiceRecords:
    """What the service's database tells the gate: the labelled outcomes and the version serving now."""

    labelled: list[LabelledObservation]
    stable_version: str | None  # the stored rollout's stable version; None before one was set
    note: str  # why there are no labels, or ""


def read_service_records(database_url: str, limit: int = LABELLED_LIMIT) -> ServiceRecords:
    """Return the labelled outcomes stored so far and the stored rollout's stable version."""
    only_held_out = "judged on held-out data only"
    try:
        shown = make_url(database_url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return ServiceRecords([], None, f"the database URL is not one SQLAlchemy reads: {only_held_out}")
    if database_url.startswith("sqlite:///") and not Path(database_url.removeprefix("sqlite:///")).exists():
        return ServiceRecords([], None, f"no database at {shown}: {only_held_out}")  # would create one
    try:
        engine = make_engine(database_url)
        try:
            with engine.connect() as conn:
                rows = labelled_observations(conn=conn, limit=limit)
            rollout = _stored_rollout(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as error:
        # An operator's tool: the driver's first line (refused, unknown host, no such table) says what to fix.
        cause = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        return ServiceRecords([], None, f"database {shown} could not be read ({cause}): {only_held_out}")
    note = "" if rows else f"no labelled outcomes in {shown} yet: {only_held_out}"
    return ServiceRecords(rows, rollout.stable_version if rollout is not None else None, note)


def _stored_rollout(engine: Engine) -> Rollout | None:
    # A database migrated before rollouts existed has labels and no rollout table: the labels still count.
    try:
        with engine.connect() as conn:
            return read_rollout(conn=conn)
    except SQLAlchemyError:
        return None


def compare_bundles(
    artifacts_dir: Path,
    candidate_version: str,
    *,
    database_url: str | None = None,
    serving_version: str = "",
    data_dir: Path = DATA_DIR,
    min_labelled: int = MIN_LABELLED,
) -> PromotionReport:
    """Score the candidate beside the serving bundle and judge it.

    The serving bundle: serving_version if named, else the stable version of the rollout stored in the
    database, else the one artifacts/current names.

    Without database_url only the held-out rows are scored. The candidate is refused when it fails its
    checksum verification, when its held-out precision at its threshold is below its precision bar, or when
    at least min_labelled labelled outcomes exist and its precision on them is below that bar.
    """
    reasons: list[str] = []
    notes: list[str] = []
    candidate = _load(artifacts_dir, candidate_version, notes)
    if isinstance(candidate, str):
        reasons.append(f"candidate {candidate_version} {candidate}")
        return PromotionReport(
            candidate_version=candidate_version,
            serving_version=None,
            held_out_fraction=None,
            held_out_seed=None,
            candidate=None,
            serving=None,
            min_labelled=min_labelled,
            promotable=False,
            reasons=reasons,
            notes=notes,
        )
    records = ServiceRecords([], None, "") if database_url is None else read_service_records(database_url)
    serving = _serving(artifacts_dir, serving_version or records.stable_version or "", notes)

    split = candidate.metadata.get("held_out", {})
    fraction, seed = split.get("fraction"), split.get("seed")
    held_out: tuple[pd.DataFrame, pd.Series] | None = None
    if fraction is None or seed is None:
        reasons.append(f"candidate {candidate.version} records no held-out split (fraction and seed)")
    else:
        held_out = _held_out_rows(data_dir, candidate, fraction, seed, reasons)
        if serving is not None:
            theirs = serving.metadata.get("held_out", {})
            if (theirs.get("fraction"), theirs.get("seed")) != (fraction, seed):
                notes.append(
                    f"serving {serving.version} was held out with fraction {theirs.get('fraction')}, seed "
                    f"{theirs.get('seed')}: both are scored on the candidate's held-out rows, which may "
                    "include rows the serving bundle was trained on"
                )

    labelled = records.labelled
    notes.extend([records.note] if records.note else [])
    bundles = [b for b in (candidate, serving) if b is not None]
    usable = [r for r in labelled if all(name in r.observation for b in bundles for name in b.spec.names)]
    if len(usable) < len(labelled):
        notes.append(
            f"{len(labelled) - len(usable)} labelled outcomes lack a feature of a bundle: not scored"
        )

    candidate_figures = _figures(candidate, held_out, usable)
    judged = [("held-out rows", candidate_figures.held_out)]
    if len(usable) >= min_labelled:
        judged.append(("labelled outcomes", candidate_figures.labelled))
    elif usable:
        notes.append(f"{len(usable)} labelled outcomes, fewer than {min_labelled}: shown, not judged on")
    bar = candidate_figures.precision_bar
    for source, scores in judged:
        if scores is not None and scores.precision < bar:
            reasons.append(
                f"candidate precision {scores.precision:.{DIGITS}f} at its threshold "
                f"{candidate_figures.threshold} on {scores.rows} {source} is below its precision bar {bar} "
                f"({scores.positive_calls} positive calls)"
            )
    _note_drift_from_record(candidate, candidate_figures, notes)
    return PromotionReport(
        candidate_version=candidate_version,
        serving_version=serving.version if serving is not None else None,
        held_out_fraction=fraction,
        held_out_seed=seed,
        candidate=candidate_figures,
        serving=_figures(serving, held_out, usable) if serving is not None else None,
        min_labelled=min_labelled,
        promotable=not reasons,
        reasons=reasons,
        notes=notes,
    )


def _load(artifacts_dir: Path, version: str, notes: list[str]) -> ModelBundle | str:
    """Return the verified bundle, or what kept it from loading; its warnings become notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            bundle = load_bundle(artifacts_dir, version)
        # Whatever keeps the worker from loading a bundle keeps it from serving: the gate says why.
        except BundleError as error:
            return f"failed verification: {error}"
        except Exception as error:
            return f"could not be loaded ({type(error).__name__}: {error})"
    notes.extend(str(warning.message) for warning in caught)
    return bundle


def _serving(artifacts_dir: Path, version: str, notes: list[str]) -> ModelBundle | None:
    try:
        version = version or current_version(artifacts_dir)
    except BundleError as error:
        notes.append(f"no serving bundle ({error}): the candidate is judged alone")
        return None
    serving = _load(artifacts_dir, version, notes)
    if isinstance(serving, str):
        notes.append(f"serving bundle {version} {serving}: the candidate is judged alone")
        return None
    return serving


def _held_out_rows(
    data_dir: Path, candidate: ModelBundle, fraction: float, seed: int, reasons: list[str]
) -> tuple[pd.DataFrame, pd.Series]:
    """Return the candidate's held-out features and target; refuse it if the data are not its data."""
    # Training builds its table with the same seed it splits with; the metadata records that one seed.
    features, target, _ = build_training_table(data_dir, seed=seed)
    _, x_test, _, y_test = held_out_split(features, target, fraction=fraction, seed=seed)
    recorded = (candidate.metadata.get("data", {}).get("rows"), candidate.metadata["held_out"].get("rows"))
    if recorded != (len(features), len(x_test)):
        reasons.append(
            f"the data in {data_dir} give {len(features)} rows ({len(x_test)} held out), the candidate "
            f"recorded {recorded[0]} ({recorded[1]}): its held-out rows cannot be re-derived from them"
        )
    return x_test, y_test


def _figures(
    bundle: ModelBundle,
    held_out: tuple[pd.DataFrame, pd.Series] | None,
    labelled: Sequence[LabelledObservation],
) -> BundleFigures:
    held_out_scores = None
    if held_out is not None:
        features, target = held_out
        frame = build_frame(features.to_dict("records"), bundle.spec)  # type: ignore[arg-type]
        held_out_scores = score(target, bundle.predict_proba(frame), bundle.threshold)
    labelled_scores = None
    if labelled:
        proba = bundle.predict_observations([row.observation for row in labelled])
        labelled_scores = score([row.true_class for row in labelled], proba, bundle.threshold)
    return BundleFigures(
        version=bundle.version,
        threshold=bundle.threshold,
        precision_bar=float(bundle.metadata.get("precision_bar", PRECISION_BAR)),
        held_out=held_out_scores,
        labelled=labelled_scores,
    )


def _note_drift_from_record(candidate: ModelBundle, figures: BundleFigures, notes: list[str]) -> None:
    """Say so when the held-out figures differ from those recorded at training (other libraries or data)."""
    recorded = candidate.metadata.get("held_out", {}).get("metrics", {})
    if figures.held_out is None:
        return
    found = {"roc_auc": figures.held_out.roc_auc, "precision": figures.held_out.precision}
    for name, value in found.items():
        if value is not None and name in recorded and round(value, DIGITS) != recorded[name]:
            notes.append(f"held-out {name} {value:.{DIGITS}f} differs from the {recorded[name]} recorded")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, judge one candidate, print the report; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m training.promotion", description=__doc__)
    parser.add_argument("candidate_version", help="the bundle version to judge, a folder of the artifacts")
    parser.add_argument("--artifacts-dir", type=Path, help="default: ARTIFACTS_DIR")
    parser.add_argument("--database-url", help="where the labelled outcomes are; default: DATABASE_URL")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the training data files")
    parser.add_argument("--min-labelled", type=int, default=MIN_LABELLED, help="labels needed to judge on")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    artifacts_dir: Path = args.artifacts_dir or get_settings().artifacts_dir
    if not is_version_name(args.candidate_version):
        parser.error(f"{args.candidate_version!r} is not a bundle version")
    if not bundle_path(artifacts_dir, args.candidate_version).is_dir():
        parser.error(f"no bundle {args.candidate_version} in {artifacts_dir}")
    report = compare_bundles(
        artifacts_dir,
        args.candidate_version,
        database_url=args.database_url or get_settings().database_url,
        data_dir=args.data_dir,
        min_labelled=args.min_labelled,
    )
    print(json.dumps(report_as_dict(report), indent=2) if args.json else render_table(report))
    return PROMOTABLE if report.promotable else REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
