"""Accept latency against load: the open-loop p99 at rising shares of the measured accept rate.

The sustained measure asks one question (does 80 % of the maximum stay within the p99 target?); the curve
answers the one an operator sizes with: up to what rate does it, and what does a request cost the machine at
each rate. On a machine the load generator shares, CPU per request is not constant: at a light rate nothing
is merged (a message, a micro-batch and a commit per observation) and every wake-up starts cold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from bench.load import open_loop, percentile
from bench.measures import wait_all_predicted
from bench.plan import Plan
from devstack.stack import ServiceStack

# The accept latency target of the single-submission and sustained rows.
ACCEPT_P99_TARGET_MS = 20.0


@dataclass(frozen=True)
class CurvePoint:
    """One open-loop load: its rate, the latency clients saw, and what the machine spent on it."""

    share: float
    rate: float
    p50: float
    p99: float
    errors: int
    machine_busy: float
    # Busy time of all cores over the load per accepted request: every process, the client's included.
    machine_cpu_ms: float


@dataclass(frozen=True)
class LatencyCurve:
    """The points of the curve, from the lightest rate up, and how busy the machine was with no load."""

    seconds: float
    idle_busy: float
    points: tuple[CurvePoint, ...]

    def highest_within_target(self) -> CurvePoint | None:
        """Return the highest point below which every point kept p99 within the target, without errors."""
        best = None
        for point in self.points:
            if point.errors or point.p99 > ACCEPT_P99_TARGET_MS:
                break
            best = point
        return best


def _busy_seconds() -> float:
    """Return the CPU seconds all cores have spent running code since boot (user, system and interrupts)."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq")  # guest time is counted in user already
    return sum(getattr(times, field, 0.0) for field in busy)


def run_latency_curve(stack: ServiceStack, plan: Plan, max_rate: float) -> LatencyCurve:
    """Load POST /predict at each of plan.curve_shares of max_rate in turn, the queue drained between them.

    A point's CPU counts from its first request to its last prediction, so the work that each request left
    to the workers is in it. The machine's busy share with no load comes first, to read the points against.
    """
    cores = psutil.cpu_count() or 1
    busy_before, started = _busy_seconds(), time.monotonic()
    time.sleep(plan.curve_seconds)
    idle_busy = (_busy_seconds() - busy_before) / (cores * (time.monotonic() - started))
    points = []
    for share in sorted(plan.curve_shares):
        busy_before, started = _busy_seconds(), time.monotonic()
        result = open_loop(stack.url("/predict"), rate=share * max_rate, seconds=plan.curve_seconds)
        wait_all_predicted(stack)
        busy = _busy_seconds() - busy_before
        points.append(
            CurvePoint(
                share=share,
                rate=result.rate,
                p50=percentile(result.latencies_ms, 0.5),
                p99=percentile(result.latencies_ms, 0.99),
                errors=result.errors,
                machine_busy=busy / (cores * (time.monotonic() - started)),
                machine_cpu_ms=busy * 1000 / max(len(result.ids), 1),
            )
        )
    return LatencyCurve(seconds=plan.curve_seconds, idle_busy=idle_busy, points=tuple(points))


def render_latency_curve(curve: LatencyCurve, max_rate: float) -> str:
    """Return the Markdown section of the curve, with the highest rate that stayed within the target."""
    best = curve.highest_within_target()
    within = (
        f"{best.rate:,.0f}/s ({best.rate / max_rate:.0%} of the accept rate)"
        if best is not None
        else "none of the rates measured"
    )
    header = [
        "### Accept latency against load",
        "",
        f"Open loop, {curve.seconds:g} s at each share of the accept rate measured above "
        f"({max_rate:,.0f}/s), the queue drained between them. Machine busy and CPU per request: busy time "
        "of all cores (every process, the load generator's too) from the first request to the last "
        f"prediction, over that time and over the requests accepted. With no load the machine was "
        f"{curve.idle_busy:.0%} busy. Accept p99 ≤ {ACCEPT_P99_TARGET_MS:g} ms held up to: {within}.",
        "",
        "| share | requests/s | accept p50 / p99 (ms) | errors | machine busy "
        "| machine CPU per request (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows = [
        f"| {p.share:.0%} | {p.rate:,.0f} | {p.p50:.1f} / {p.p99:.1f} | {p.errors} | {p.machine_busy:.0%} "
        f"| {p.machine_cpu_ms:.2f} |"
        for p in curve.points
    ]
    return "\n".join(header + rows)
