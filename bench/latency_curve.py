"""Accept latency against load: the open-loop p99 at rising shares of the measured accept rate.

The sustained measure asks one question (does 80 % of the maximum stay within the p99 target?); the curve
answers the one an operator sizes with: up to what rate does it, and what does a request cost the machine at
each rate. On a machine the load generator shares, CPU per request is not constant: at a light rate nothing
is merged (a message, a micro-batch and a commit per observation) and every wake-up starts cold.
"""

from __future__ import annotations

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
    """The points of the curve, from the lightest rate up."""

    seconds: float
    points: tuple[CurvePoint, ...]

    def highest_within_target(self) -> CurvePoint | None:
        """Return the highest point below which every point kept p99 within the target, without errors."""
        best = None
        for point in self.points:
            if point.errors or point.p99 > ACCEPT_P99_TARGET_MS:
                break
            best = point
        return best


def run_latency_curve(stack: ServiceStack, plan: Plan, max_rate: float) -> LatencyCurve:
    """Load POST /predict at each of plan.curve_shares of max_rate in turn, the queue drained between them."""
    cores = psutil.cpu_count() or 1
    points = []
    for share in sorted(plan.curve_shares):
        psutil.cpu_percent()  # starts the window: the next call averages over it
        result = open_loop(stack.url("/predict"), rate=share * max_rate, seconds=plan.curve_seconds)
        busy = psutil.cpu_percent() / 100
        wait_all_predicted(stack)
        accepted = max(len(result.ids), 1)
        points.append(
            CurvePoint(
                share=share,
                rate=result.rate,
                p50=percentile(result.latencies_ms, 0.5),
                p99=percentile(result.latencies_ms, 0.99),
                errors=result.errors,
                machine_busy=busy,
                machine_cpu_ms=busy * cores * result.elapsed * 1000 / accepted,
            )
        )
    return LatencyCurve(seconds=plan.curve_seconds, points=tuple(points))


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
        f"({max_rate:,.0f}/s), the queue drained between them. Machine CPU per request: busy time of all "
        "cores (every process, the load generator's too) over the requests accepted. "
        f"Accept p99 ≤ {ACCEPT_P99_TARGET_MS:g} ms held up to: {within}.",
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
