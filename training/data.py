"""Build the training table from the two real Connecticut files, sampling what they lack reproducibly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from core.settings import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "data"
STOPS_FILE = "connecticut_stops_small.csv"
SAMPLE_FILE = "connecticut_searched_sample.csv"
TARGET = "ContrabandIndicator"
DATETIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
MIN_AGE = 10
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

REAL_COLUMNS = ["StatuteReason", "SubjectAge", "hour", "day_of_week"]
SAMPLED_COLUMNS = [
    "InterventionReasonCode",
    "ResidentIndicator",
    "SearchAuthorizationCode",
    "SubjectEthnicityCode",
    "SubjectRaceCode",
    "SubjectSexCode",
]
FEATURES = [
    "InterventionReasonCode",
    "SubjectRaceCode",
    "SubjectSexCode",
    "SubjectEthnicityCode",
    "StatuteReason",
    "ResidentIndicator",
    "SearchAuthorizationCode",
    "SubjectAge",
    "hour",
    "day_of_week",
]


def _strip_categories(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].str.strip()
    return frame


def load_stops(data_dir: Path = DATA_DIR) -> tuple[pd.DataFrame, int]:
    """Read the 76,743-row file, derive hour and day_of_week; return the rows kept and the rows read."""
    raw = _strip_categories(pd.read_csv(data_dir / STOPS_FILE))
    when = pd.to_datetime(raw["InterventionDateTime"], format=DATETIME_FORMAT)
    stops = raw.assign(hour=when.dt.hour.astype("int64"), day_of_week=when.dt.day_name())
    stops = stops.dropna(subset=["StatuteReason"])
    stops = stops[stops["SubjectAge"] >= MIN_AGE]
    stops["SubjectAge"] = stops["SubjectAge"].round().astype("int64")
    return stops.drop(columns=["InterventionDateTime"]).reset_index(drop=True), len(raw)


def load_sample(data_dir: Path = DATA_DIR) -> tuple[pd.DataFrame, int]:
    """Read the 2,000-row file that holds the six columns the large file lacks."""
    raw = _strip_categories(pd.read_csv(data_dir / SAMPLE_FILE))
    return raw[raw["SubjectAge"] >= MIN_AGE].reset_index(drop=True), len(raw)


def build_training_table(
    data_dir: Path = DATA_DIR, seed: int = 42
) -> tuple[pd.DataFrame, pd.Series, dict[str, Any]]:
    """Return features, target and a provenance record saying which columns are real and how."""
    stops, stops_read = load_stops(data_dir)
    sample, sample_read = load_sample(data_dir)
    rng = np.random.default_rng(seed)
    donors = np.empty(len(stops), dtype="int64")
    donor_pools = sample.groupby(TARGET).indices
    for target, rows in stops.groupby(TARGET).indices.items():
        donors[rows] = rng.choice(donor_pools[target], size=len(rows), replace=True)
    for column in SAMPLED_COLUMNS:
        stops[column] = sample[column].to_numpy()[donors]
    provenance: dict[str, Any] = {
        "sources": {STOPS_FILE: {"rows_read": stops_read}, SAMPLE_FILE: {"rows_read": sample_read}},
        "rows": len(stops),
        "real_columns": [*REAL_COLUMNS, TARGET],
        "derived": {
            "hour": "hour of InterventionDateTime",
            "day_of_week": "day of InterventionDateTime",
        },
        "sampled_columns": SAMPLED_COLUMNS,
        "sampling": (
            f"the six sampled columns are taken together from one row of {SAMPLE_FILE} drawn with the "
            f"same {TARGET}, with replacement, numpy default_rng(seed={seed}): they follow the real "
            "class-conditional joint distribution, not the real value of each stop"
        ),
        "cleaning": [
            "stray whitespace stripped from category values ('Stop Sign ' -> 'Stop Sign')",
            f"rows with SubjectAge < {MIN_AGE} dropped (as the course did)",
            "rows without StatuteReason dropped",
        ],
        "positive_rate": round(float(stops[TARGET].mean()), 4),
    }
    return stops[FEATURES], stops[TARGET].astype(bool), provenance


def held_out_split(
    features: pd.DataFrame, target: pd.Series, *, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Return training features, held-out features, training target, held-out target, stratified on target.

    Training and the promotion gate both split here: with a bundle's recorded fraction and seed (and the
    table built with that seed) the gate finds exactly the rows the bundle was held out from.
    """
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=fraction, random_state=seed, stratify=target
    )
    return x_train, x_test, y_train, y_test
