"""Every shipped notebook route over the OULAD head and over a click table the size of the
real one, under real kernel gateways, warm, at concurrency 1 and 8; and the import.

    .venv/bin/python tests/benchmarks/bench_notebooks.py [--rows 10655280] [--requests 40]

Two stores, each the OULAD directory imported with ``hub-ext``'s importer: the *head* (the
click table's first 13,905 rows, as ``../shared`` has it) and the *full* one (a click table
of ``--rows`` rows built from the head by ``oulad_scale.py``: the real table's size by
default; ``--rows 0`` measures the head only). For the full one: the import's time and the
store's size on disk. Then, for each route of the four shipped notebooks (JSON and chart),
p50 and p99 of ``--requests`` requests at concurrency 1 and 8, on each store, and the ratio
full / head of p99 at concurrency 1. Goals (issue #12): import <= 10 min, store <= 3 GB,
every route's p99 <= 200 ms at concurrency 1 over the full table, and no route more than 3x
slower there than over the head. The course is ``--course`` (``*``, every OULAD course, by
default: the whole tables, read from the store); a course's routes read its extract, as
the analytics service serves them (built first, its time and size printed: per-day sums
included). ``:learner`` and ``:resource`` take a sample of the course's own.
A gateway runs as the analytics service starts it: one kernel, so requests queue.
OULAD: Kuzilek, Hlosta, Zdrahal (2017), Scientific Data 4:170171, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from hub_ext.services.analytics.extracts import CourseExtracts, extract_url  # noqa: E402
from hub_ext.services.events.importers import Progress, import_oulad  # noqa: E402
from hub_ext.services.events.models import Enrolment, Resource  # noqa: E402
from hub_ext.services.events.store import EventStore  # noqa: E402
from tests.benchmarks import oulad_scale  # noqa: E402
from tests.benchmarks.oulad_scale import FULL_ROWS  # noqa: E402
from tests.events_fixtures import NOTEBOOKS, OULAD, start_gateway  # noqa: E402

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


def percentiles(lat: list[float]) -> tuple[float, float]:
    return statistics.median(lat), pct(lat, 99)


#: the notebooks and their routes (``:learner`` and ``:resource`` are filled in per request)
NOTEBOOK_ROUTES = {
    "course_overview.ipynb": [
        "/summary", "/activity/daily", "/activity/weekly", "/funnel", "/leavers",
        "/sentiment/weekly", "/charts/activity/daily", "/charts/activity/weekly", "/charts/funnel",
    ],
    "know_thy_student.ipynb": [
        "/learners/:learner", "/learners/:learner/sessions", "/segments",
        "/charts/learners/:learner", "/charts/learners/:learner/sessions", "/charts/segments",
    ],
    "resource_heatmap.ipynb": [
        "/resources", "/resources/:resource/not-opened", "/videos", "/charts/heatmap",
        "/charts/videos",
    ],
    "study_time_and_assessments.ipynb": [
        "/assessments", "/time-on-step", "/quiz", "/charts/assessments", "/charts/time-on-step",
        "/charts/quiz",
    ],
}  # fmt: skip


def shipped_routes() -> list[str]:
    """Every ``# GET`` route of the shipped notebooks (checked against the table above)."""
    found = set()
    for nb in NOTEBOOK_ROUTES:
        for line in (NOTEBOOKS / nb).read_text().splitlines():
            m = re.search(r"# GET (/[^\\\"]*)", line)
            if m:
                found.add((nb, m[1].strip()))
    listed = {(nb, r) for nb, routes in NOTEBOOK_ROUTES.items() for r in routes}
    if found != listed:
        raise SystemExit(f"the notebooks' routes changed: {sorted(found ^ listed)}")
    return [r for routes in NOTEBOOK_ROUTES.values() for r in routes]


def build(workdir: Path, name: str, vle: Path | None) -> tuple[EventStore, float]:
    """A store of the OULAD directory (its click table ``vle`` if given); the import's time."""
    store = EventStore(f"sqlite:///{workdir / name}")
    t0 = time.perf_counter()
    report = import_oulad(store, OULAD, student_vle=vle, progress=Progress(enabled=None))
    seconds = time.perf_counter() - t0
    print(f"  {name}: {sum(report.new.values()):,} rows in {seconds:,.1f} s", flush=True)
    return store, seconds


def store_size(workdir: Path, name: str) -> int:
    return sum(p.stat().st_size for p in workdir.glob(name + "*"))


def served(store: EventStore, workdir: Path, course: str) -> str | None:
    """What a course's notebooks read: the course's extract, as the analytics service builds
    it (its build timed); ``*`` (every course) has none: the store itself (None)."""
    if course == "*":
        return None
    root = workdir / f"extracts-{uuid.uuid4().hex[:8]}"
    extracts = CourseExtracts(store_url=store.readonly_url, root=str(root))
    t0 = time.perf_counter()
    extracts.build(course)
    print(f"  the extract of {course}: {time.perf_counter() - t0:,.1f} s, "
          f"{extracts.path(course).stat().st_size / 1e6:,.0f} MB", flush=True)  # fmt: skip
    extracts.close()
    return extract_url(str(extracts.path(course)))


def measure(store: EventStore, workdir: Path, course: str, requests: int) -> dict:
    """{route: {concurrency: (p50, p99)}} over ``store`` (a course: its extract), every
    shipped route."""
    learners, resources = samples(store, course, requests)
    url = served(store, workdir, course)
    gateways = {nb: start_gateway(nb, store, course, workdir, url=url) for nb in NOTEBOOK_ROUTES}
    out: dict[str, dict[int, tuple[float, float]]] = {}
    client = httpx.Client(timeout=600)
    try:
        for nb, routes in NOTEBOOK_ROUTES.items():
            for route in routes:
                paths = [
                    route.replace(":learner", learners[i % len(learners)]).replace(
                        ":resource", urllib.parse.quote(resources[i % len(resources)], safe="")
                    )
                    for i in range(requests)
                ]

                def get(path, base=gateways[nb].url):
                    r = client.get(base + path)
                    if r.status_code not in (200, 404):  # 404: a learner with no events
                        raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")

                for path in paths[:3]:  # warm: the kernel, the page cache
                    get(path)
                out[route] = {c: percentiles(run(get, paths, c)) for c in (1, 8)}
                p50, p99 = out[route][1]
                print(f"    {route:<38} c=1 p50 {p50:8.1f} p99 {p99:8.1f} ms", flush=True)
    finally:
        client.close()
        for gw in gateways.values():
            gw.stop()
    return out


def samples(store: EventStore, course: str, n: int) -> tuple[list[str], list[str]]:
    """A sample of the course's learners and of its resources (fixed seed)."""
    with store.engine.connect() as conn:
        where_e = [] if course == "*" else [Enrolment.course_id == course]
        where_r = [] if course == "*" else [Resource.course_id == course]
        learners = sorted(set(conn.execute(select(Enrolment.learner).where(*where_e)).scalars()))
        resources = sorted(
            set(conn.execute(select(Resource.resource_id).where(*where_r)).scalars())
        )
    rng = random.Random(5)
    return [rng.choice(learners) for _ in range(n)], [rng.choice(resources) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help="the full click table's rows")
    parser.add_argument("--requests", type=int, default=40, help="requests a route, a concurrency")
    parser.add_argument("--course", default=COURSE, help="the course (default *: every one)")
    parser.add_argument(
        "--workdir", type=Path, help="where the stores go (default: a temporary one)"
    )
    parser.add_argument(
        "--full-store",
        type=Path,
        help="an SQLite store of a full import made before (hub-ext import oulad ... --vle): "
        "measured as the full one, its import not (a full import takes a while)",
    )
    args = parser.parse_args()
    shipped_routes()
    with tempfile.TemporaryDirectory(prefix="bench-nb-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        print("the head (13,905 click rows)")
        head, _ = build(workdir, "head.sqlite", None)
        results = {"head": measure(head, workdir, args.course, args.requests)}
        head.dispose()
        full_import = full_size = None
        if args.full_store:
            print(f"the full store {args.full_store}")
            full = EventStore(f"sqlite:///{args.full_store.resolve()}")
            results["full"] = measure(full, workdir, args.course, args.requests)
            full.dispose()
        elif args.rows:
            vle = workdir / "studentVle.csv"
            oulad_scale.main([str(vle), "--rows", str(args.rows)])
            print(f"the full table ({args.rows:,} click rows)")
            full, full_import = build(workdir, "full.sqlite", vle)
            full_size = store_size(workdir, "full.sqlite")
            vle.unlink()
            results["full"] = measure(full, workdir, args.course, args.requests)
            full.dispose()
        report(results, args.rows, full_import, full_size)


def report(results: dict, rows: int, seconds: float | None, size: int | None) -> None:
    print()
    if seconds is not None:
        print(f"import of {rows:,} click rows: {seconds / 60:.1f} min (goal <= 10), "
              f"store {size / 1e9:.2f} GB (goal <= 3)")  # fmt: skip
    heads = results["head"]
    fulls = results.get("full")
    print(f"{'route':<38} {'head c=1 p50/p99':>18} {'c=8 p99':>9}"
          + (f" {'full c=1 p50/p99':>20} {'c=8 p99':>9} {'p99 full/head':>14}" if fulls else ""))  # fmt: skip
    for route, by_c in heads.items():
        (h50, h99), (_, h99_8) = by_c[1], by_c[8]
        text = f"{route:<38} {h50:8.1f}/{h99:8.1f} {h99_8:9.1f}"
        if fulls:
            (f50, f99), (_, f99_8) = fulls[route][1], fulls[route][8]
            flag = "" if f99 <= 200 and f99 <= 3 * max(h99, 1e-9) else "  (goal not met)"
            text += f" {f50:9.1f}/{f99:9.1f} {f99_8:9.1f} {f99 / h99:14.2f}{flag}"
        print(text)


if __name__ == "__main__":
    main()
