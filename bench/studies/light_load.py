"""Measure accept latency and submit-to-result latency of single submissions at a steady light rate.

Run against a service that is already up (for example `make run`):
    .venv/bin/python -m bench.studies.light_load --url http://127.0.0.1:5000 --database-url sqlite:///var/predictions.db
Accept latency is timed by the client; submit-to-result is predicted_at - received_at, both service stamps.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import requests

from bench.load import percentile
from core.storage.engine import make_engine
from core.storage.observations import find_prediction
from devstack.course import COURSE_OBSERVATION


def main() -> None:
    """Send requests at --rate per second for --seconds, then report p50/p99 of both latencies."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()

    ids: list[str] = []
    accept_ms: list[float] = []
    interval = 1 / args.rate
    run = uuid.uuid4().hex[:8]
    with requests.Session() as session:
        start = time.perf_counter()
        for n in range(int(args.rate * args.seconds)):
            time.sleep(max(0.0, start + n * interval - time.perf_counter()))
            observation_id = f"light-{run}-{n}"
            body = {"id": observation_id, "observation": COURSE_OBSERVATION}
            sent = time.perf_counter()
            response = session.post(f"{args.url}/predict", json=body, timeout=10)
            accept_ms.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 202:
                raise SystemExit(f"unexpected {response.status_code}: {response.text}")
            ids.append(observation_id)
    time.sleep(3)
    engine = make_engine(args.database_url)
    with engine.connect() as conn:
        records = [find_prediction(conn=conn, observation_id=i) for i in ids]
    result_ms = [
        (r.predicted_at - r.received_at).total_seconds() * 1000
        for r in records
        if r is not None and r.predicted_at is not None
    ]
    print(f"requests {len(ids)} at {args.rate:g}/s; predicted {len(result_ms)}")
    for name, values in (("accept", accept_ms), ("submit-to-result", result_ms)):
        print(
            f"{name:>17} ms  p50 {percentile(values, 0.5):7.1f}  p99 {percentile(values, 0.99):7.1f}  "
            f"mean {statistics.fmean(values):7.1f}"
        )


if __name__ == "__main__":
    main()
