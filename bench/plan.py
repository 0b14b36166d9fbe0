"""How long and how big each measurement is: the full run and the CI smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How long and how big each measurement is."""

    load_seconds: float
    light_seconds: float
    bulk_rows: int
    rows_per_request: int
    concurrency: int = 16
    light_rate: float = 20


FULL = Plan(load_seconds=15, light_seconds=10, bulk_rows=100_000, rows_per_request=10_000)
SMOKE = Plan(load_seconds=1.5, light_seconds=1.5, bulk_rows=2_000, rows_per_request=1_000)
