"""Course page benchmark: a course of 5,000 learners, against the stock admin page's listing.

    .venv/bin/python tests/benchmarks/bench_coursepage.py [--learners 5000]
        [--requests 200]

A real JupyterHub and proxy on loopback (tests/hubtest.py) with the course pages service.
The course ds101 has a synthetic roster file of ``--learners`` learners; each is also made
a hub user through the hub's API (``POST /hub/api/users``, one call) and put in the hub
group ``course:ds101:learner`` (as logins would), so the service reads all of them from the
hub's REST API. In one run, ``--requests`` sequential GETs each, through the proxy, timed by
the client on loopback (the server's time plus a loopback round trip, the same for all):

- ``course page``: ``/services/courses/ds101/`` as the teacher (HTML, the first 50 learners);
- ``course search``: the same with ``?q=learner42`` (11 learners);
- ``course API``: ``/services/courses/api/courses/ds101/learners`` (JSON, first 50);
- baseline ``admin users``: what the stock admin page (``/hub/admin``) fetches to show its
  first screen, ``/hub/api/users?include_stopped_servers&offset=0&limit=50&sort=id`` with
  the pagination header (the admin page's HTML itself is a static shell for its script,
  timed too, as ``admin page html``), as the admin;
- baseline ``admin search``: the same with ``name_filter=learner42``, the admin page's
  search box.

Prints p50/p99 in ms and each course figure's ratio to its baseline, then the cold first
course page (the service's first reading of the hub: it pages through all users). Bounded:
about two minutes on 2 cores for 5,000 learners.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# the hub and its services run this checkout's hub_ext, whatever the environment installs
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from tests.conftest import write_catalog  # noqa: E402
from tests.hubtest import HubProcess  # noqa: E402


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def timed(client: httpx.AsyncClient, path: str, n: int, **kwargs) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        r = await client.get(path, **kwargs)
        times.append(time.perf_counter() - start)
        if r.status_code != 200:
            raise SystemExit(f"GET {path}: {r.status_code} {r.text[:300]}")
    return times


async def run(learners: int, requests: int) -> None:
    names = [f"learner{i:04d}" for i in range(learners)]
    with tempfile.TemporaryDirectory(prefix="bench-coursepage-") as tmp:
        root = Path(tmp)
        (root / "catalog").mkdir()
        roster = "username,role\n" + "".join(f"{n},learner\n" for n in names)
        (root / "catalog" / "roster.csv").write_text(roster)
        catalog = write_catalog(
            root / "catalog",
            [
                {
                    "id": "ds101",
                    "title": "Data analysis with Python",
                    "opens": day(-30),
                    "closes": day(60),
                    "teachers": ["tina"],
                    "rosters": ["roster.csv"],
                }
            ],
        )
        hub = HubProcess(root / "hub", catalog, services=("courses",))
        try:
            await hub.start(timeout=120)
            started = time.perf_counter()
            r = await hub.api("POST", "/users", json={"usernames": names}, timeout=600)
            assert r.status_code == 201, r.text[:300]
            r = await hub.api(
                "POST", "/groups/course:ds101:learner/users", json={"users": names}, timeout=600
            )
            assert r.status_code == 200, r.text[:300]
            print(
                f"{learners} hub users and group members made in {time.perf_counter() - started:.1f}s"
            )
            tina = await hub.user_token("tina")
            teacher = httpx.AsyncClient(
                base_url=hub.url, headers={"Authorization": f"token {tina}"}, timeout=120
            )
            admin = httpx.AsyncClient(
                base_url=hub.url,
                headers={
                    "Authorization": f"token {hub.admin_token}",
                    "Accept": "application/jupyterhub-pagination+json",
                },
                timeout=120,
            )
            async with teacher, admin:
                start = time.perf_counter()
                r = await teacher.get("/services/courses/ds101/")
                cold = time.perf_counter() - start
                assert r.status_code == 200 and f"{learners} learner(s)" in r.text, r.text[:500]
                admin_page = await hub.login("admin")
                try:
                    results = {
                        "course page": await timed(teacher, "/services/courses/ds101/", requests),
                        "course search": await timed(
                            teacher, "/services/courses/ds101/", requests, params={"q": "learner42"}
                        ),
                        "course API": await timed(
                            teacher, "/services/courses/api/courses/ds101/learners", requests
                        ),
                        "admin users": await timed(
                            admin,
                            "/hub/api/users",
                            requests,
                            params={
                                "include_stopped_servers": "",
                                "offset": 0,
                                "limit": 50,
                                "sort": "id",
                            },
                        ),  # fmt: skip
                        "admin search": await timed(
                            admin,
                            "/hub/api/users",
                            requests,
                            params={
                                "include_stopped_servers": "",
                                "offset": 0,
                                "limit": 50,
                                "sort": "id",
                                "name_filter": "learner42",
                            },
                        ),  # fmt: skip
                        "admin page html": await timed(admin_page, "/hub/admin", requests),
                    }
                finally:
                    await admin_page.aclose()
        finally:
            await hub.shutdown()

    figures = {name: percentiles(samples) for name, samples in results.items()}
    print(
        f"\n{learners} learners, {requests} sequential requests each (ms, client-timed on loopback)"
    )
    print(f"{'':18} {'p50':>8} {'p99':>8}")
    for name, (p50, p99) in figures.items():
        print(f"{name:18} {p50:8.1f} {p99:8.1f}")
    for course, stock in (
        ("course page", "admin users"),
        ("course API", "admin users"),
        ("course search", "admin search"),
    ):
        (c50, c99), (s50, s99) = figures[course], figures[stock]
        print(f"ratio {course} / {stock}: p50 {c50 / s50:.2f}, p99 {c99 / s99:.2f}")
    print(f"cold first course page (the service reads all {learners} users): {cold * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learners", type=int, default=5000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    asyncio.run(run(args.learners, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
