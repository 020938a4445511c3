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
import math
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

PAGINATION = "application/jupyterhub-pagination+json"
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
#: the harness's first line (tests/hubtest.py), and what the stock hub has instead: importing
#: hub_ext would install the course hub's share sync (hub_ext.rbac) in the stock hub too
HARNESS_IMPORT = "from hub_ext.hubconfig import add_service, configure_course_hub\n"
STOCK_ADD_SERVICE = """\
def add_service(c, service, scopes):
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    role = {"name": f"service-{service['name']}", "scopes": scopes, "services": [service["name"]]}
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), role]
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
            return HubProcess(
                work, self.catalog, db_url=self.db_url, extra_config=extra, services=("courses",)
            )
        base = STOCK_BASE.format(
            db_url=self.db_url,
            cookie=str(work / "cookie_secret"),
            password=DEV_PASSWORD,
            homes=str(work / "homes" / "{username}"),
        )
        stock = HubProcess(work, self.catalog, base_config=base, extra_config=extra)
        config = stock.config_path.read_text().replace(HARNESS_IMPORT, STOCK_ADD_SERVICE)
        if "hub_ext" in config:
            raise RuntimeError(f"the stock hub's config imports hub_ext:\n{config}")
        stock.config_path.write_text(config)
        return stock

    def record(self, step: str, label: str, value) -> None:
        """Keep a figure, and print it at once (a long run that fails later keeps its log)."""
        self.results.setdefault(step, {})[label] = value
        if isinstance(value, list) and value and isinstance(value[0], float):
            value = f"{len(value)} values, p50 {percentile(value, 50):.3f} p99 {percentile(value, 99):.3f}"
        print(f"    {step} ({label}): {value}", flush=True)


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


async def users_with(hub: HubProcess, state: str, server: str, timeout: float = 120) -> set:
    """The users whose ``server`` is in ``state`` (``ready``, ``active``): every page of the
    hub's listing (it answers at most ``api_page_max_limit``, 200, users a request, so one
    unpaged request misses most of a 500-learner storm)."""
    names: set[str] = set()
    offset = 0
    while True:
        r = await hub.api(
            "GET",
            "/users",
            params={"state": state, "offset": offset, "limit": 200},
            headers={"Accept": PAGINATION},
            timeout=timeout,
        )
        r.raise_for_status()
        body = r.json()
        names |= {m["name"] for m in body["items"] if server in m.get("servers", {})}
        following = body["_pagination"].get("next")
        if not following:
            return names
        offset = following["offset"]


async def wait_stopped(hub: HubProcess, users: list[str], server: str) -> list[str]:
    """Wait until no ``server`` of ``users`` is active, for at most a minute plus a second a
    server (a storm's 500 stops queue up in the hub). Returns the users whose server is
    still active then: counted and reported, not a crash."""
    deadline = time.monotonic() + 60 + len(users)
    wanted = set(users)
    while True:
        left = sorted(wanted & await users_with(hub, "active", server))
        if not left or time.monotonic() > deadline:
            if left:
                print(f"  {len(left)} {server} servers never stopped, e.g. {left[:3]}", flush=True)
            return left
        await asyncio.sleep(0.2)


async def spawn_overhead(
    hub: HubProcess, users: list[str], course: str, timeout: float
) -> tuple[list[float], list[str]]:
    """Start each of ``users``' ``course`` server, one at a time: request to ready (the
    timeout for one that never is). Also returns the users whose server never stopped."""
    times = []
    for u in users:
        t0 = time.monotonic()
        try:
            r = await hub.api("POST", f"/users/{u}/servers/{course}", timeout=timeout)
        except httpx.HTTPError as e:
            print(f"  {u}/{course}: {e!r}")
            times.append(timeout)
            continue
        if r.status_code == 201:
            times.append(time.monotonic() - t0)
        elif r.status_code == 202:
            times.append(await wait_ready(hub, u, course, t0, timeout))
        else:
            print(f"  {u}/{course}: {r.status_code} {r.text[:200]}")
            times.append(timeout)
        await hub.api("DELETE", f"/users/{u}/servers/{course}", timeout=timeout)
    return times, await wait_stopped(hub, users, course)


async def storm(
    hub: HubProcess, users: list[str], course: str, timeout: float
) -> tuple[list[float], list[str]]:
    """Every one of ``users`` starts ``course`` at once; each's time to ready (or timeout),
    and the users whose server never stopped afterwards. One poller asks the hub which
    servers are ready (as bench_spawn_storm does), so that the watching does not load the
    hub more than the storm."""
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
            names = await users_with(hub, "ready", course, timeout)
        except httpx.TimeoutException:
            continue
        now = time.monotonic() - t0
        for name in names & wanted:
            ready.setdefault(name, now)
        if posting.done() and not all(posting.result()):
            wanted = {u for u, ok in zip(users, posting.result(), strict=True) if ok}
        await asyncio.sleep(0.1)
    await posting
    await asyncio.gather(
        *(hub.api("DELETE", f"/users/{u}/servers/{course}", timeout=600) for u in users)
    )
    return [ready.get(u, timeout) for u in users], await wait_stopped(hub, users, course)


#: seconds a request may take: a teacher's every request costs the hub time in proportion to
#: their course (JupyterHub expands each share they have, one per learner's server)
PATIENT = 900


async def log_in(client: httpx.AsyncClient, user: str) -> tuple[httpx.Response, float]:
    """Post the login form as ``user`` with ``client``: the answer and the seconds it took."""
    await client.get("/hub/login")
    t0 = time.monotonic()
    r = await client.post(
        "/hub/login",
        data={"username": user, "password": DEV_PASSWORD, "_xsrf": client.cookies["_xsrf"]},
    )
    return r, time.monotonic() - t0


async def timed_login(hub: HubProcess, user: str) -> float:
    async with httpx.AsyncClient(base_url=hub.url, timeout=PATIENT) as client:
        r, elapsed = await log_in(client, user)
    if r.status_code != 302:
        raise RuntimeError(f"login of {user}: {r.status_code} {r.text[:300]}")
    return elapsed


async def logged_in(hub: HubProcess, user: str) -> httpx.AsyncClient:
    """A browser-like client logged in as ``user`` (the caller closes it)."""
    client = httpx.AsyncClient(base_url=hub.url, timeout=PATIENT, follow_redirects=True)
    r, _ = await log_in(client, user)
    if r.status_code != 200 or "/hub/login" in str(r.url):
        await client.aclose()
        raise RuntimeError(f"login of {user}: {r.status_code} {r.url}")
    return client


async def logins(hub: HubProcess, users: list[str]) -> dict:
    first = [await timed_login(hub, u) for u in users]
    again = [await timed_login(hub, u) for u in users]
    return {"first": statistics.median(first), "again": statistics.median(again)}


async def home_page(hub: HubProcess, user: str, rounds: int = 5) -> float:
    client = await logged_in(hub, user)
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


async def course_page(hub: HubProcess, teacher: str, course: str, rounds: int = 5) -> dict:
    """The course hub's course page (``/services/courses/<course>/``) as a teacher: the first
    view (on a service that has not read the hub yet: it pages through every user it may
    list) and the median of ``rounds`` more (from its reading, refreshed every 10 s)."""
    await (await logged_in(hub, teacher)).aclose()  # the hub knows their groups
    r = await hub.api("POST", f"/users/{teacher}/tokens", json={"note": "bench"}, timeout=PATIENT)
    r.raise_for_status()
    headers = {"Authorization": f"token {r.json()['token']}"}
    async with httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=PATIENT) as client:
        times = []
        for _ in range(rounds + 1):
            t0 = time.monotonic()
            r = await client.get(f"/services/courses/{course}/")
            times.append(time.monotonic() - t0)
            if r.status_code != 200 or "learner(s)" not in r.text:
                raise RuntimeError(f"course page of {course}: {r.status_code} {r.text[:300]}")
    return {"first": times[0], "again": statistics.median(times[1:])}


async def admin_listing(hub: HubProcess, rounds: int = 5) -> dict:
    """Stock's nearest page: the first screen of the admin page (``/hub/admin`` fetches
    ``/hub/api/users``, 50 users with their servers, paginated), as the admin."""
    params = {"include_stopped_servers": "", "offset": 0, "limit": 50, "sort": "id"}
    times = []
    for _ in range(rounds + 1):
        t0 = time.monotonic()
        r = await hub.api("GET", "/users", params=params, headers={"Accept": PAGINATION})
        times.append(time.monotonic() - t0)
        r.raise_for_status()
    return {"first": times[0], "again": statistics.median(times[1:])}


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


async def failed_as_nan(step, *keys: str):
    """``step``'s figure, or NaN (each of ``keys``'s) when it fails: said, and the run goes on."""
    try:
        return await step
    except (httpx.HTTPError, RuntimeError) as e:
        print(f"  failed: {e!r}", flush=True)
        return {k: math.nan for k in keys} if keys else math.nan


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
        times, left = [], []
        for course, users in by_course.items():
            some, never = await spawn_overhead(hub, users, course, timeout)
            times, left = times + some, left + never
        run.record(step, label, times)
        run.record(f"{step}_never_stopped", label, left)

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
            teacher = pop.teachers[course][0]
            run.record(f"home_{course}", label, await failed_as_nan(home_page(hub, teacher)))
            page = course_page(hub, teacher, course) if label == "course" else admin_listing(hub)
            run.record(f"page_{course}", label, await failed_as_nan(page, "first", "again"))
            run.record(f"teacher_{course}", label, await teacher_change(hub, run.db_url, course))
        times, left = await storm(hub, storm_users, BIG, timeout)
        run.record("storm", label, times)
        run.record("storm_never_stopped", label, left)

    await with_hub(run, "stock", lambda h: the_rest(h, "stock", chunks[2]))
    await with_hub(run, "course", lambda h: the_rest(h, "course", chunks[3]))
    for course, size in pop.sizes.items():
        run.record(f"roster_{course}", "course", roster_import(pop, run.tmp, course, size))


def growth(sizes: list[int], values: list[float]) -> float:
    """The exponent of ``values`` against ``sizes`` between the smallest and the largest
    course (1: linear; above 1: faster than linear; near 0: flat)."""
    if min(values[0], values[-1]) <= 0:
        return float("nan")
    return math.log(values[-1] / values[0]) / math.log(sizes[-1] / sizes[0])


def report(run: Run) -> None:
    pop, res, timeout = run.pop, run.results, run.timeout
    print(f"\n== bench_scale at scale {pop.scale} ({pop.total} users, {COURSES} courses) ==")

    def never(step):
        return {k: len(v) for k, v in res[f"{step}_never_stopped"].items()}

    def spawn_line(step, users):
        c, s = res[step]["course"], res[step]["stock"]
        failed = {k: sum(t >= timeout for t in v) for k, v in (("course", c), ("stock", s))}
        print(
            f"spawn overhead at {users} users ({len(c)}/{len(s)} servers, one at a time): "
            f"course p50 {percentile(c, 50) * 1000:.0f} ms p99 {percentile(c, 99) * 1000:.0f} ms | "
            f"stock p50 {percentile(s, 50) * 1000:.0f} ms p99 {percentile(s, 99) * 1000:.0f} ms | "
            f"ratio p50 {percentile(c, 50) / percentile(s, 50):.2f} "
            f"p99 {percentile(c, 99) / percentile(s, 99):.2f} (goal <= 1.2); "
            f"never ready {failed}; never stopped {never(step)}"
        )

    spawn_line("spawn_small", res["users"]["small"])
    spawn_line("spawn_large", res["users"]["large"])
    c, s = res["login"]["course"], res["login"]["stock"]
    print(
        f"login, a user in {TEN} courses (median of 20): first course {c['first'] * 1000:.0f} ms"
        f" / stock {s['first'] * 1000:.0f} ms ({c['first'] / s['first']:.2f}); again "
        f"{c['again'] * 1000:.0f} / {s['again'] * 1000:.0f} ms ({c['again'] / s['again']:.2f})"
    )

    order = sorted(SIZES, key=lambda k: pop.sizes[k])
    sizes = [pop.sizes[k] for k in order]

    def row(title, values, fmt="{:>12.0f}ms", slope=True):
        tail = f"{growth(sizes, values):>9.2f}" if slope else ""
        print(f"  {title:<34}" + "".join(fmt.format(v) for v in values) + tail)

    def ratio(title, course, stock):
        print(
            f"  {title:<34}"
            + "".join(f"{c / s:>14.2f}" for c, s in zip(course, stock, strict=True))
        )

    print(
        f"  {'per course size (learners)':<34}"
        + "".join(f"{n:>14}" for n in sizes)
        + "   growth (1 = linear)"
    )
    row("roster import (course)", [res[f"roster_{k}"]["course"] * 1000 for k in order])
    for what in ("add", "remove", "add_again", "remove_again"):
        title = f"{what.replace('_again', ' again')} a teacher"
        both = {
            label: [res[f"teacher_{k}"][label][what] * 1000 for k in order]
            for label in ("course", "stock")
        }
        for label, values in both.items():
            row(f"{title} ({label})", values)
        ratio(f"  {title}: course/stock", both["course"], both["stock"])
    row(
        "  shares given, fewest (course)",
        [res[f"teacher_{k}"]["course"]["shares"] for k in order],
        "{:>14d}",
        slope=False,
    )
    row(
        "  shares left after removal, most",
        [res[f"teacher_{k}"]["course"]["left"] for k in order],
        "{:>14d}",
        slope=False,
    )
    home = {label: [res[f"home_{k}"][label] * 1000 for k in order] for label in ("course", "stock")}
    for label, values in home.items():
        row(f"teacher home page ({label})", values)
    ratio("  home page: course/stock", home["course"], home["stock"])
    pages = {
        label: [res[f"page_{k}"][label]["again"] * 1000 for k in order]
        for label in ("course", "stock")
    }
    row("course page (course)", pages["course"])
    row("admin page's listing (stock)", pages["stock"])
    ratio("  course page/admin listing", pages["course"], pages["stock"])
    cold, users = res[f"page_{BIG}"]["course"]["first"], res["users"]["large"]
    print(f"course page, first view (the service reads the hub's {users} users): {cold:.2f} s")
    c, s = res["storm"]["course"], res["storm"]["stock"]
    print(
        f"storm, {len(c)} learners starting at once (never ready = {timeout:.0f} s): "
        f"course p50 {percentile(c, 50):.2f}s p99 {percentile(c, 99):.2f}s "
        f"({sum(t >= timeout for t in c)} never ready) | stock p50 {percentile(s, 50):.2f}s "
        f"p99 {percentile(s, 99):.2f}s ({sum(t >= timeout for t in s)} never ready) | "
        f"ratio p50 {percentile(c, 50) / percentile(s, 50):.2f} "
        f"p99 {percentile(c, 99) / percentile(s, 99):.2f}; never stopped {never('storm')}"
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
