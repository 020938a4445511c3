"""Latency of the shipped notebooks' learner-profile and heat-map routes over the whole OULAD
import, under a real kernel gateway, warm, at concurrency 1 and 8.

    .venv/bin/python tests/benchmarks/bench_notebooks.py [--requests 60]

Baseline, measured in the same run: the same query function called directly in this
process on the same read-only store (what the gateway adds is the ratio). The gateway runs
as the analytics service would start it (one kernel: requests to one notebook queue). The
course is ``*`` (every OULAD course: the whole tables). OULAD: Kuzilek, Hlosta, Zdrahal
(2017), Scientific Data 4:170171, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from hub_ext.services.events import queries as q  # noqa: E402
from hub_ext.services.events.importers import import_oulad  # noqa: E402
from hub_ext.services.events.models import Enrolment  # noqa: E402
from hub_ext.services.events.store import EventStore  # noqa: E402
from tests.events_fixtures import OULAD, start_gateway  # noqa: E402

COURSE = "*"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(call, items: list, concurrency: int) -> list[float]:
    """Latencies (ms) of call(item) for every item, from ``concurrency`` threads."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(mine):
        for item in mine:
            t0 = time.perf_counter()
            call(item)
            dt = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(dt)

    threads = [
        threading.Thread(target=worker, args=(items[k::concurrency],)) for k in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def line(label: str, lat: list[float], base: list[float] | None) -> str:
    p50, p99 = statistics.median(lat), pct(lat, 99)
    ratio = f"  x{p50 / statistics.median(base):6.1f} vs direct" if base else ""
    return f"  {label:<34} n={len(lat):>3}  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=60, help="requests per route and concurrency"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-nb-") as tmp:
        workdir = Path(tmp)
        store = EventStore(f"sqlite:///{workdir / 'events.sqlite'}")
        t0 = time.perf_counter()
        report = import_oulad(store, OULAD)
        print(f"OULAD import: {sum(report.new.values()):,} rows in {time.perf_counter() - t0:.1f}s")
        with store.engine.connect() as conn:
            learners = sorted(set(conn.execute(select(Enrolment.learner)).scalars()))
        rng = random.Random(5)
        sample = [rng.choice(learners) for _ in range(args.requests)]
        direct = q.connect(store.readonly_url)
        gateways = {}
        try:
            for nb in ("know_thy_student.ipynb", "resource_heatmap.ipynb"):
                gateways[nb] = start_gateway(nb, store, COURSE, workdir)
            client = httpx.Client(timeout=120)
            routes = {
                "GET /learners/:learner": (
                    lambda learner: client.get(
                        f"{gateways['know_thy_student.ipynb'].url}/learners/{learner}"
                    ).raise_for_status(),
                    lambda learner: q.learner_profile(direct, COURSE, learner),
                    sample,
                ),
                "GET /resources?limit=50": (
                    lambda _i: client.get(
                        f"{gateways['resource_heatmap.ipynb'].url}/resources",
                        params={"limit": "50"},
                    ).raise_for_status(),
                    lambda _i: q.heatmap(direct, COURSE, limit=50),
                    list(range(args.requests)),
                ),
            }
            for route, (via_gateway, via_query, items) in routes.items():
                print(route)
                for item in items[:5]:  # warm: kernel, caches
                    via_gateway(item)
                    via_query(item)
                base = run(via_query, items, 1)
                print(line("direct query (baseline)", base, None))
                for concurrency in (1, 8):
                    lat = run(via_gateway, items, concurrency)
                    print(line(f"kernel gateway, concurrency {concurrency}", lat, base))
            client.close()
        finally:
            for gw in gateways.values():
                gw.stop()
            direct.dispose()
            store.dispose()


if __name__ == "__main__":
    main()
