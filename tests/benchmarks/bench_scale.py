"""A MOOC-sized hub: where a hub with the course logic stops scaling (issue #15).

20,000 users in 200 courses, one course (c000) with 5,000 learners and 5 teachers, and two
smaller ones for the curves (c001: 1,000 learners, c002: 500). The hub's database is on
PostgreSQL (Debian's package, started here), the tier a MOOC runs on. Two real hubs with
their real proxies take turns on the same database:

- **course**: the course hub (``configure_course_hub``: ``CourseLocalSpawner``, the course
  login with group sync, the course roles and shares, the course home page);
- **stock**: JupyterHub's ``SimpleLocalProcessSpawner``, ``DummyAuthenticator`` and pages.

Both spawn the same minimal process (:mod:`tests.benchmarks.scale_server`: a tiny HTTP
server answering the hub's readiness check), so the hub is measured, not JupyterLab; the
course hub spawns it through the whole course spawner (enrollment, window, workspace,
environment, share). Users are written into the database while the hub is stopped
(:mod:`tests.benchmarks.scale_population`: the rows logins and first starts write);
nothing timed depends on how they got there.

Measured, course against stock where stock has an equivalent:

- spawn-request overhead (POST to "started") p50/p99, at 1,000 and at 20,000 users;
- a first login and a repeat login of a user in 10 courses (group sync; stock: no groups);
- importing a roster of 500, 1,000 and 5,000 rows (``hub-ext import-roster``'s code);
- adding one teacher to a course of 500, 1,000, 5,000 learners (the shares it creates) and
  removing them (stock: the same group change, no shares);
- a teacher's home page for those courses (the course hub lists the course's learners);
- 500 learners starting at once (the class-start storm).

A server that never became ready counts as the timeout in every percentile.

    nice python -m tests.benchmarks.bench_scale [--scale 0.05] [--samples 40]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.benchmarks.scale_population import add_shared_servers, add_users
from tests.conftest import day, write_catalog
from tests.hubtest import DEV_PASSWORD, HubProcess
from tests.postgres_fixtures import PostgresServer, new_database

SERVER = [sys.executable, str(Path(__file__).with_name("scale_server.py"))]
COMMON = f"""
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 600
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.active_server_limit = 0
c.JupyterHub.log_level = "INFO"
c.Spawner.cmd = {SERVER!r}
"""
COURSE = COMMON + f"c.CourseLocalSpawner.cmd = {SERVER!r}\n"
STOCK_BASE = """\
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie!r}
c.JupyterHub.cleanup_servers = False
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.spawner_class = "simple"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"admin"}}
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r}
"""
PROFILE = """
import atexit, cProfile
_profile = cProfile.Profile()
_profile.enable()
atexit.register(_profile.dump_stats, {path!r})
"""
BIG, MID, SMALL = "c000", "c001", "c002"
COURSES = 200
SIZES = {BIG: 5000, MID: 1000, SMALL: 500}
TEN = 10  # the login user's courses


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def learner_group(course: str) -> str:
    return f"course:{course}:learner"


def teacher_group(course: str) -> str:
    return f"course:{course}:teacher"


class Population:
    """Who is in which course, at ``scale`` (1.0: 20,000 users)."""

    def __init__(self, scale: float):
        self.scale = scale
        self.sizes = {c: max(2, round(n * scale)) for c, n in SIZES.items()}
        self.total = max(20, round(20000 * scale))
        self.courses = [f"c{i:03d}" for i in range(COURSES)]
        self.teachers = {
            c: [f"t{c}-{k}" for k in range(5 if c == BIG else 1)] for c in self.courses
        }
        self.learners: dict[str, list[str]] = {c: [] for c in self.courses}
        n = 0
        for course, size in self.sizes.items():
            self.learners[course] = [f"u{n + k:05d}" for k in range(size)]
            n += size
        others = self.courses[len(SIZES) :]
        rest = self.total - n - sum(len(t) for t in self.teachers.values())
        for k in range(max(0, rest)):
            self.learners[others[k % len(others)]].append(f"u{n + k:05d}")
        # users of the login measurement: in 10 courses each, not in the hub until they log in
        self.tenners = [f"ten{k:02d}" for k in range(20)]
        for course in others[:TEN]:
            self.learners[course] += self.tenners

    def groups(self) -> dict[str, list[str]]:
        """Every user (but the login users) -> their course groups."""
        people: dict[str, list[str]] = {}
        for course in self.courses:
            for u in self.learners[course]:
                if u not in self.tenners:
                    people.setdefault(u, []).append(learner_group(course))
            for t in self.teachers[course]:
                people.setdefault(t, []).append(teacher_group(course))
        return people

    def catalog(self, directory: Path) -> Path:
        return write_catalog(
            directory,
            [
                {
                    "id": c,
                    "title": f"Course {c}",
                    "opens": day(-30),
                    "closes": day(60),
                    "learners": self.learners[c],
                    "teachers": [*self.teachers[c], f"extra-{c}"],
                }
                for c in self.courses
            ],
        )


class Run:
    """One PostgreSQL database, the two hubs' configurations, and the figures."""

    def __init__(self, pop: Population, tmp: Path, db_url: str, timeout: float, profile=None):
        self.pop, self.tmp, self.db_url, self.timeout = pop, tmp, db_url, timeout
        self.profile = profile
        self.catalog = pop.catalog(tmp / "catalog")
        self.results: dict[str, dict] = {}
        self._n = 0

    def hub(self, label: str) -> HubProcess:
        self._n += 1
        work = self.tmp / f"{label}-{self._n}"
        extra = COURSE if label == "course" else COMMON
        if self.profile is not None:  # the hub's event loop (its main thread), to a file
            extra += PROFILE.format(path=str(self.profile / f"{self._n}-{label}.pstats"))
        if label == "course":
            return HubProcess(work, self.catalog, db_url=self.db_url, extra_config=extra)
        base = STOCK_BASE.format(
            db_url=self.db_url,
            cookie=str(work / "cookie_secret"),
            password=DEV_PASSWORD,
            homes=str(work / "homes" / "{username}"),
        )
        return HubProcess(work, self.catalog, base_config=base, extra_config=extra)

    def record(self, step: str, label: str, value) -> None:
        self.results.setdefault(step, {})[label] = value


# ------------------------------------------------------------------ measurements


async def wait_ready(hub: HubProcess, user: str, server: str, t0: float, timeout: float) -> float:
    """Seconds from ``t0`` until ``user/server`` is ready; ``timeout`` if it never is."""
    while time.monotonic() - t0 < timeout:
        r = await hub.api("GET", f"/users/{user}", timeout=timeout)
        model = r.json().get("servers", {}).get(server) if r.status_code == 200 else None
        if model and model.get("ready"):
            return time.monotonic() - t0
        if model is None or not model.get("pending"):
            break  # failed: it stopped
        await asyncio.sleep(0.05)
    return timeout


async def wait_stopped(hub: HubProcess, users: list[str], server: str) -> None:
    for _ in range(600):
        r = await hub.api("GET", "/users", params={"state": "active"}, timeout=120)
        if not {m["name"] for m in r.json() if server in m.get("servers", {})} & set(users):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"servers of {server} did not stop")


async def spawn_overhead(hub: HubProcess, users: list[str], course: str, timeout: float) -> list:
    """Start each of ``users``' ``course`` server, one at a time: request to ready."""
    times = []
    for u in users:
        t0 = time.monotonic()
        r = await hub.api("POST", f"/users/{u}/servers/{course}", timeout=timeout)
        if r.status_code == 201:
            times.append(time.monotonic() - t0)
        elif r.status_code == 202:
            times.append(await wait_ready(hub, u, course, t0, timeout))
        else:
            print(f"  {u}/{course}: {r.status_code} {r.text[:200]}")
            times.append(timeout)
        await hub.api("DELETE", f"/users/{u}/servers/{course}")
    await wait_stopped(hub, users, course)
    return times


async def storm(hub: HubProcess, users: list[str], course: str, timeout: float) -> list:
    """Every one of ``users`` starts ``course`` at once; each's time to ready (or timeout).
    One poller asks the hub which servers are ready (as bench_spawn_storm does), so that
    the watching does not load the hub more than the storm."""
    t0 = time.monotonic()

    async def request(u):
        try:
            r = await hub.api("POST", f"/users/{u}/servers/{course}", timeout=timeout)
            return r.status_code < 400
        except httpx.HTTPError:
            return False

    posting = asyncio.gather(*(request(u) for u in users))
    ready: dict[str, float] = {}
    wanted = set(users)
    while time.monotonic() - t0 < timeout and not (posting.done() and ready.keys() >= wanted):
        try:
            r = await hub.api("GET", "/users", params={"state": "ready"}, timeout=timeout)
        except httpx.TimeoutException:
            continue
        now = time.monotonic() - t0
        for model in r.json():
            if model["name"] in wanted and course in model.get("servers", {}):
                ready.setdefault(model["name"], now)
        if posting.done() and not all(posting.result()):
            wanted = {u for u, ok in zip(users, posting.result(), strict=True) if ok}
        await asyncio.sleep(0.1)
    await posting
    await asyncio.gather(
        *(hub.api("DELETE", f"/users/{u}/servers/{course}", timeout=600) for u in users)
    )
    await wait_stopped(hub, users, course)
    return [ready.get(u, timeout) for u in users]


async def timed_login(hub: HubProcess, user: str) -> float:
    async with httpx.AsyncClient(base_url=hub.url, timeout=120) as client:
        await client.get("/hub/login")
        t0 = time.monotonic()
        r = await client.post(
            "/hub/login",
            data={"username": user, "password": DEV_PASSWORD, "_xsrf": client.cookies["_xsrf"]},
        )
        elapsed = time.monotonic() - t0
    if r.status_code != 302:
        raise RuntimeError(f"login of {user}: {r.status_code} {r.text[:300]}")
    return elapsed


async def logins(hub: HubProcess, users: list[str]) -> dict:
    first = [await timed_login(hub, u) for u in users]
    again = [await timed_login(hub, u) for u in users]
    return {"first": statistics.median(first), "again": statistics.median(again)}


async def home_page(hub: HubProcess, user: str, rounds: int = 5) -> float:
    client = await hub.login(user)
    try:
        await client.get("/hub/home")  # warm: templates compiled
        times = []
        for _ in range(rounds):
            t0 = time.monotonic()
            r = await client.get("/hub/home")
            times.append(time.monotonic() - t0)
            r.raise_for_status()
        return statistics.median(times)
    finally:
        await client.aclose()


def count_shares(db_url: str, user: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM shares s JOIN users u ON s.user_id = u.id"
                    " WHERE u.name = :n"
                ),
                {"n": user},
            ).scalar()
    finally:
        engine.dispose()


async def teacher_change(hub: HubProcess, db_url: str, course: str, rounds: int = 3) -> dict:
    """Add ``extra-<course>`` to the course's teacher group, then remove them, ``rounds``
    times: the first round (the hub has not read the course's shares yet) and the median of
    the others."""
    teacher, path = f"extra-{course}", f"/groups/{teacher_group(course)}/users"
    result: dict[str, list] = {"add": [], "remove": [], "shares": [], "left": []}
    for _ in range(rounds):
        for what, method in (("add", "POST"), ("remove", "DELETE")):
            t0 = time.monotonic()
            r = await hub.api(method, path, json={"users": [teacher]}, timeout=600)
            result[what].append(time.monotonic() - t0)
            r.raise_for_status()
            result["shares" if what == "add" else "left"].append(count_shares(db_url, teacher))
    return {
        "add": result["add"][0],
        "remove": result["remove"][0],
        "add_again": statistics.median(result["add"][1:]),
        "remove_again": statistics.median(result["remove"][1:]),
        "shares": min(result["shares"]),
        "left": max(result["left"]),
    }


def roster_import(pop: Population, tmp: Path, course: str, rows: int) -> float:
    """``hub-ext import-roster``'s work (parse and validate against the catalog, store)."""
    from hub_ext.courses import Catalog
    from hub_ext.roster import RosterStore, parse_roster

    path = tmp / f"roster-{course}-{rows}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "email", "role"])
        for k in range(rows):
            writer.writerow([f"r{course}{k:05d}", f"r{course}{k:05d}@example.edu", "learner"])
    catalog = Catalog.load(pop.catalog(tmp / "roster-catalog"))
    t0 = time.monotonic()
    roster = parse_roster(path, catalog=catalog, course=course)
    RosterStore(tmp / "rosters").save(roster)
    elapsed = time.monotonic() - t0
    assert len(roster.entries) == rows, len(roster.entries)
    return elapsed


# ------------------------------------------------------------------ the run


async def with_hub(run: Run, label: str, work):
    hub = run.hub(label)
    t0 = time.monotonic()
    await hub.start(timeout=900)
    print(f"  {label} hub up in {time.monotonic() - t0:.1f}s", flush=True)
    try:
        return await work(hub)
    finally:
        await hub.shutdown()


async def main(scale: float, samples: int, timeout: float, profile: Path | None = None) -> dict:
    pop = Population(scale)
    server = PostgresServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            tmp = Path(tmp)
            run = Run(pop, tmp, new_database(server.url, "bench_scale"), timeout, profile)
            await measure(run, samples)
    finally:
        server.stop()
    report(run)
    return run.results


async def measure(run: Run, samples: int) -> None:
    pop, timeout = run.pop, run.timeout
    people = pop.groups()
    names = list(people)
    first = min(1000, len(names) // 2)
    big = pop.learners[BIG]
    # spawn samples: disjoint per hub and phase, each a first start of that server
    pool = [u for c in pop.courses[len(SIZES) :] for u in pop.learners[c] if u not in pop.tenners]
    n = min(samples, len(pool) // 4)
    chunks = [pool[k * n : (k + 1) * n] for k in range(4)]
    course_of = {u: c for c in pop.courses for u in pop.learners[c]}

    async def nothing(hub):
        return None

    # the schema (the course hub's first start), then the first 1,000 users
    await with_hub(run, "course", nothing)
    phase_a = {u: people[u] for u in names[:first]} | {u: people[u] for u in sum(chunks[:2], [])}
    t0 = time.monotonic()
    add_users(run.db_url, phase_a)
    run.record("users", "small", len(phase_a))
    print(f"{len(phase_a)} users written in {time.monotonic() - t0:.1f}s", flush=True)

    async def spawn_step(hub, label, chunk, step):
        by_course: dict[str, list[str]] = {}
        for u in chunk:
            by_course.setdefault(course_of[u], []).append(u)
        times = []
        for course, users in by_course.items():
            times += await spawn_overhead(hub, users, course, timeout)
        run.record(step, label, times)

    await with_hub(run, "course", lambda h: spawn_step(h, "course", chunks[0], "spawn_small"))
    await with_hub(run, "stock", lambda h: spawn_step(h, "stock", chunks[1], "spawn_small"))

    # everyone else, and the measured courses' servers as after their first lesson
    rest = {u: g for u, g in people.items() if u not in phase_a}
    t0 = time.monotonic()
    add_users(run.db_url, rest)
    shares = sum(
        add_shared_servers(run.db_url, c, pop.learners[c], teacher_group(c)) for c in SIZES
    )
    add_users(run.db_url, {f"extra-{c}": [] for c in SIZES})
    run.record("users", "large", len(phase_a) + len(rest) + len(SIZES))
    print(
        f"{len(rest)} more users ({len(people)} in all), {shares} shares written in "
        f"{time.monotonic() - t0:.1f}s",
        flush=True,
    )
    storm_users = big[: max(2, round(500 * pop.scale))]

    async def the_rest(hub, label, chunk):
        await spawn_step(hub, label, chunk, "spawn_large")
        login_users = pop.tenners if label == "course" else [f"plain{k:02d}" for k in range(20)]
        run.record("login", label, await logins(hub, login_users))
        for course in SIZES:
            run.record(f"home_{course}", label, await home_page(hub, pop.teachers[course][0]))
            run.record(f"teacher_{course}", label, await teacher_change(hub, run.db_url, course))
        run.record("storm", label, await storm(hub, storm_users, BIG, timeout))

    await with_hub(run, "stock", lambda h: the_rest(h, "stock", chunks[2]))
    await with_hub(run, "course", lambda h: the_rest(h, "course", chunks[3]))
    for course, size in pop.sizes.items():
        run.record(f"roster_{course}", "course", roster_import(pop, run.tmp, course, size))


def report(run: Run) -> None:
    pop, res, timeout = run.pop, run.results, run.timeout
    print(f"\n== bench_scale at scale {pop.scale} ({pop.total} users, {COURSES} courses) ==")

    def spawn_line(step, users):
        c, s = res[step]["course"], res[step]["stock"]
        failed = {k: sum(t >= timeout for t in v) for k, v in (("course", c), ("stock", s))}
        print(
            f"spawn overhead at {users} users ({len(c)}/{len(s)} servers, one at a time): "
            f"course p50 {percentile(c, 50) * 1000:.0f} ms p99 {percentile(c, 99) * 1000:.0f} ms | "
            f"stock p50 {percentile(s, 50) * 1000:.0f} ms p99 {percentile(s, 99) * 1000:.0f} ms | "
            f"ratio p50 {percentile(c, 50) / percentile(s, 50):.2f} "
            f"p99 {percentile(c, 99) / percentile(s, 99):.2f} (goal <= 1.2); never ready {failed}"
        )

    spawn_line("spawn_small", res["users"]["small"])
    spawn_line("spawn_large", res["users"]["large"])
    c, s = res["login"]["course"], res["login"]["stock"]
    print(
        f"login, a user in {TEN} courses (median of 20): first course {c['first'] * 1000:.0f} ms"
        f" / stock {s['first'] * 1000:.0f} ms ({c['first'] / s['first']:.2f}); again "
        f"{c['again'] * 1000:.0f} / {s['again'] * 1000:.0f} ms ({c['again'] / s['again']:.2f})"
    )

    def row(title, values, fmt="{:>12.0f}ms"):
        print(f"  {title:<31}" + "".join(fmt.format(v) for v in values))

    order = sorted(SIZES, key=lambda k: pop.sizes[k])
    sizes = [pop.sizes[k] for k in order]
    print("per course size (learners):      " + "".join(f"{n:>14}" for n in sizes))
    row("roster import (course)", [res[f"roster_{k}"]["course"] * 1000 for k in order])
    for what in ("add", "remove", "add_again", "remove_again"):
        for label in ("course", "stock"):
            row(
                f"{what.replace('_again', ' again')} a teacher ({label})",
                [res[f"teacher_{k}"][label][what] * 1000 for k in order],
            )
    row(
        "  shares given, fewest (course)",
        [res[f"teacher_{k}"]["course"]["shares"] for k in order],
        "{:>14d}",
    )
    row(
        "  shares left after removal, most",
        [res[f"teacher_{k}"]["course"]["left"] for k in order],
        "{:>14d}",
    )
    for label in ("course", "stock"):
        row(f"teacher home page ({label})", [res[f"home_{k}"][label] * 1000 for k in order])
    print("  course page: no `courses` service on main yet: not measured")
    c, s = res["storm"]["course"], res["storm"]["stock"]
    print(
        f"storm, {len(c)} learners starting at once (never ready = {timeout:.0f} s): "
        f"course p50 {percentile(c, 50):.2f}s p99 {percentile(c, 99):.2f}s "
        f"({sum(t >= timeout for t in c)} never ready) | stock p50 {percentile(s, 50):.2f}s "
        f"p99 {percentile(s, 99):.2f}s ({sum(t >= timeout for t in s)} never ready) | "
        f"ratio p50 {percentile(c, 50) / percentile(s, 50):.2f} p99 {percentile(c, 99) / percentile(s, 99):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: 20,000 users (default)")
    parser.add_argument("--samples", type=int, default=100, help="servers per spawn measurement")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before 'never ready'")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--profile", type=Path, help="write each hub's cProfile statistics into this directory"
    )
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(main(args.scale, args.samples, args.timeout, args.profile))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
