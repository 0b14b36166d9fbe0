"""A single behind a bulk load on a peer: singles at the light rate, polled from the client, while the bulk
load a user of that peer would send drains through it; the load's rate without and with them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.load import closed_loop, open_loop_while, percentile
from bench.peers.measure import BehindBulk, PeerEndpoint, wait_all_results, waiting_for_results
from bench.plan import Plan


def bulk_load(peer: PeerEndpoint, plan: Plan) -> tuple[float, int]:
    """Send the peer its bulk load as its users would; return obs/s until every result was in or refused
    (the rows of refused submissions not counted), and errors (refused submissions among them)."""
    if peer.poll is None:
        raise ValueError(f"{peer.label} answers with the result: no queue to wait behind")
    started = time.time()
    bulk = closed_loop(
        peer.submit_url, concurrency=peer.bulk_concurrency, total=peer.bulk_requests, shape=peer.bulk_shape
    )
    settled = wait_all_results(peer.poll, bulk.ids, timeout_s=plan.behind_max_seconds)
    done = len(bulk.ids) - len(settled.failed)
    rate = peer.bulk_rows * done / peer.bulk_requests / (settled.end - started)
    return rate, bulk.errors + len(settled.failed)


def measure_behind_bulk(peer: PeerEndpoint, plan: Plan) -> BehindBulk:
    """Measure a started, warmed-up peer's bulk load alone, then with singles beside it until it is done."""
    if peer.poll is None:
        raise ValueError(f"{peer.label} answers with the result: no queue to wait behind")
    alone, alone_errors = bulk_load(peer, plan)
    latencies: list[float] = []
    refused: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as loader:
        beside = loader.submit(bulk_load, peer, plan)
        singles = open_loop_while(
            peer.submit_url,
            rate=plan.light_rate,
            running=lambda: not beside.done(),
            max_seconds=plan.behind_max_seconds,
            shape=peer.shape,
            follow_up=waiting_for_results(peer.poll, latencies, refused, timeout_s=plan.behind_max_seconds),
        )
        rate, beside_errors = beside.result()
    return BehindBulk(
        singles=len(singles.ids),
        behind_p50=percentile(latencies, 0.5),
        behind_p99=percentile(latencies, 0.99),
        behind_max=max(latencies, default=0.0),
        bulk_alone_rps=alone,
        bulk_beside_rps=rate,
        bulk_how=peer.bulk_how,
        errors=singles.errors + len(refused) + alone_errors + beside_errors,
    )
