"""The promotion gate's report: the verdict, the figures it rests on, and how they print (table or JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DIGITS = 4  # as training rounds the figures it records
MISSING = "-"
ROUNDED = {"roc_auc", "precision", "recall"}
FIGURES = (
    ("rows", "rows"),
    ("ROC AUC", "roc_auc"),
    ("precision at threshold", "precision"),
    ("recall at threshold", "recall"),
    ("positive calls", "positive_calls"),
)


@dataclass(frozen=True)
class Scores:
    """A bundle's figures on one set of rows; roc_auc is None when the rows hold a single class."""

    rows: int
    roc_auc: float | None
    precision: float
    recall: float
    positive_calls: int


@dataclass(frozen=True)
class BundleFigures:
    """One bundle's stored threshold and bar, and its scores on held-out rows and on labelled outcomes."""

    version: str
    threshold: float
    precision_bar: float
    held_out: Scores | None
    labelled: Scores | None


@dataclass(frozen=True)
class PromotionReport:
    """The verdict on a candidate, the figures it rests on, and what the reader should know besides."""

    candidate_version: str
    serving_version: str | None
    held_out_fraction: float | None
    held_out_seed: int | None
    candidate: BundleFigures | None  # None: the candidate did not load
    serving: BundleFigures | None  # None: no serving bundle, or it did not load
    min_labelled: int
    promotable: bool
    reasons: list[str]
    notes: list[str]


def report_as_dict(report: PromotionReport) -> dict[str, Any]:
    """Return the report as JSON-ready data, the scores rounded as training records them."""

    def rounded(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {name: rounded(item, name) for name, item in value.items()}
        return round(value, DIGITS) if key in ROUNDED and isinstance(value, float) else value

    data: dict[str, Any] = rounded(asdict(report))
    return data


def _figure(value: float | int | None) -> str:
    if value is None:
        return MISSING
    return str(value) if isinstance(value, int) else f"{value:.{DIGITS}f}"


def render_table(report: PromotionReport) -> str:
    """Return the serving and candidate figures side by side, then the notes, the verdict and its reasons."""
    sides = [report.serving, report.candidate]
    headers = [f"serving {report.serving_version or MISSING}", f"candidate {report.candidate_version}"]
    width = max(22, *(len(header) + 2 for header in headers))
    lines = [f"{'':<40}" + "".join(f"{header:>{width}}" for header in headers)]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"{label:<40}" + "".join(f"{cell:>{width}}" for cell in cells))

    row("threshold", [MISSING if side is None else str(side.threshold) for side in sides])
    row("precision bar", [MISSING if side is None else str(side.precision_bar) for side in sides])
    split = f"fraction {report.held_out_fraction}, seed {report.held_out_seed}"
    for title, source in ((f"held-out rows ({split})", "held_out"), ("labelled outcomes", "labelled")):
        lines.append(title)
        scores: list[Scores | None] = [None if side is None else getattr(side, source) for side in sides]
        for label, name in FIGURES:
            row(f"  {label}", [MISSING if s is None else _figure(getattr(s, name)) for s in scores])
    lines.append("")
    lines.extend(f"note: {note}" for note in report.notes)
    if report.promotable:
        lines.append(f"PROMOTABLE: candidate {report.candidate_version} meets its precision bar")
    else:
        lines.append(f"REFUSED: candidate {report.candidate_version}")
        lines.extend(f"  - {reason}" for reason in report.reasons)
    return "\n".join(lines)
