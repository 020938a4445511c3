"""Docker spawn storm: 20 learners start their course container at once.

    .venv/bin/python tests/benchmarks/bench_docker_spawn.py [--learners 20] [--rounds 1]

In one run, on one image (``hub-ext/course-ds101:2026.11``), on the same learners' network
with the same limits (512 MiB, 1 CPU), on a real JupyterHub + proxy each time:

- **stock**: dockerspawner's ``DockerSpawner`` (image, network, limits, ``remove=True``
  set in the config, as a department would without this package);
- **course**: ``CourseDockerSpawner`` (enrollment check, catalog image, workspace volume
  per learner, read-only materials, progress).

Each round starts every learner's server at once through the REST API and measures, per
learner, the time from the start request to the server being ready (the hub's model says
``ready``). The storms run one after the other, alternating the order each round (use
``--rounds 2`` or more: on a shared machine, load from elsewhere moves a single storm a
lot); ``--together`` starts both storms (one hub each, 40 containers) at the same moment
instead, so both see the same load, which needs a machine that can start 40 at once. Printed: successes, p50/p95 time-to-ready, the course/stock ratios,
and the memory of an idle container (``docker stats``: usage minus page cache, averaged). Goal: 20/20 and course p95 within
1.1x of stock. Bounded: each storm times out after 300 s; everything it created (servers,
containers, volumes, network) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conftest import day, write_catalog  # noqa: E402
from tests.docker_fixtures import (  # noqa: E402
    DS101_IMAGE,
    NETWORK,
    SESSION,
    cleanup,
    docker_client_or_none,
    docker_hub_extra,
    session_containers,
)
from tests.hubtest import HubProcess  # noqa: E402

MEM = 512 * 1024**2


def stock_extra() -> str:
    return f"""
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = {DS101_IMAGE!r}
c.DockerSpawner.network_name = {NETWORK!r}
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.prefix = {SESSION + "-stock"!r}
c.DockerSpawner.mem_limit = {MEM}
c.DockerSpawner.cpu_limit = 1.0
c.DockerSpawner.volumes = {{{SESSION + "-stock_{username}_{servername}"!r}: "/home/jovyan/work"}}
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def storm(hub: HubProcess, users: list[str], timeout: float = 300) -> list[float | None]:
    """Start every user's ``bench`` server at once; time-to-ready per user (None: failed)."""

    headers = {"Authorization": f"token {hub.admin_token}"}
    client = httpx.AsyncClient(base_url=f"{hub.url}/hub/api", headers=headers, timeout=timeout)

    async def one(user: str) -> float | None:
        try:
            return await attempt(user)
        except httpx.HTTPError as e:
            print(f"  {user}: {type(e).__name__} {e}")
            return None

    async def attempt(user: str) -> float | None:
        start = time.perf_counter()
        r = await client.post(f"/users/{user}/servers/bench")
        if r.status_code >= 400:
            print(f"  {user}: {r.status_code} {r.text[:200]}")
            return None
        deadline = start + timeout
        while time.perf_counter() < deadline:
            model = (await client.get(f"/users/{user}")).json()["servers"].get("bench")
            if model is None:
                print(f"  {user}: the start failed")
                return None
            if model.get("ready"):
                return time.perf_counter() - start
            # 20 learners polling: every 0.5 s keeps the hub's own load small
            await asyncio.sleep(0.5)
        print(f"  {user}: not ready after {timeout}s")
        return None

    try:
        return list(await asyncio.gather(*(one(u) for u in users)))
    finally:
        await client.aclose()


def idle_memory(client, prefix: str) -> float:
    """Mean memory (MiB) of the running containers whose name starts with ``prefix``."""
    usages = []
    for c in client.containers(filters={"name": prefix}):
        stats = client.stats(c["Id"], stream=False)
        mem = stats["memory_stats"]
        cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
        usages.append((mem["usage"] - cache) / 1024**2)
    return statistics.mean(usages) if usages else float("nan")


PREFIX = {"stock": SESSION + "-stock", "course": SESSION + "-course"}


async def start_hub(kind: str, workdir: Path, catalog: Path, users: list[str]) -> HubProcess:
    extra = docker_hub_extra() + "c.Spawner.start_timeout = 300\nc.Spawner.http_timeout = 300\n"
    extra += (
        stock_extra()
        if kind == "stock"
        else f"c.CourseDockerSpawner.prefix = {PREFIX['course']!r}\n"
    )
    hub = HubProcess(
        workdir / f"{kind}-{time.monotonic_ns()}", catalog, backend="docker", extra_config=extra
    )
    await hub.start(timeout=180)
    for user in users:  # log in once: the hub learns their course groups
        await (await hub.login(user)).aclose()
    return hub


async def run_round(
    kinds: list[str], workdir: Path, catalog: Path, users: list[str], client
) -> dict:
    """Storms of ``kinds`` at the same moment (one hub each); results by kind."""
    hubs = {}
    try:
        for kind in kinds:
            hubs[kind] = await start_hub(kind, workdir, catalog, users)
        times = await asyncio.gather(*(storm(hubs[k], users) for k in kinds))
        await asyncio.sleep(5)  # let the servers settle before measuring idle memory
        results = {}
        for kind, t in zip(kinds, times, strict=True):
            memory = await asyncio.to_thread(idle_memory, client, PREFIX[kind] + "-")
            results[kind] = {"times": t, "memory": memory}
        return results
    finally:
        for hub in hubs.values():
            await hub.stop_all_servers()
            await hub.shutdown()
        for c in session_containers(client):
            client.remove_container(c["Id"], force=True)


def warm_up(client) -> None:
    """Read the image once before measuring: whoever goes first must not pay the cold cache."""
    c = client.create_container(
        DS101_IMAGE,
        ["python", "-c", "import jupyterhub.singleuser, jupyterlab, jupyter_server.serverapp"],
        entrypoint=[],
    )
    try:
        client.start(c["Id"])
        client.wait(c["Id"], timeout=300)
    finally:
        client.remove_container(c["Id"], force=True)


def summary(kind: str, result: dict, n: int) -> dict:
    ok = [t for t in result["times"] if t is not None]
    row = {
        "kind": kind,
        "ok": len(ok),
        "p50": percentile(ok, 0.5) if ok else float("nan"),
        "p95": percentile(ok, 0.95) if ok else float("nan"),
        "memory": result["memory"],
    }
    print(
        f"{kind:>7}: {row['ok']}/{n} ready, p50 {row['p50']:.2f}s, p95 {row['p95']:.2f}s, "
        f"idle container {row['memory']:.0f} MiB"
    )
    return row


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--together",
        action="store_true",
        help="both storms (40 containers) at the same moment instead of one after the other",
    )
    args = parser.parse_args()
    client, reason = docker_client_or_none()
    if client is None:
        print(f"skipped: {reason}")
        return 2
    try:
        client.inspect_image(DS101_IMAGE)
    except Exception:
        print(f"skipped: {DS101_IMAGE} is not built (course_images/build.sh base ds101)")
        return 2

    users = [f"learner{i:02d}" for i in range(args.learners)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-docker-"))
    catalog = write_catalog(
        workdir / "catalog",
        [
            {
                "id": "bench",
                "title": "Benchmark course",
                "image": DS101_IMAGE,
                "opens": day(-1),
                "closes": day(30),
                "mem_limit": MEM,
                "cpu_limit": 1,
                "materials": "materials/bench",
                "learners": users,
            }
        ],
    )
    rows: dict[str, list[dict]] = {"stock": [], "course": []}
    await asyncio.to_thread(warm_up, client)
    try:
        for rnd in range(args.rounds):
            if not args.together:
                order = ("stock", "course") if rnd % 2 == 0 else ("course", "stock")
                steps = [[kind] for kind in order]
            else:
                steps = [["stock", "course"]]
            for kinds in steps:
                what = " and ".join(kinds)
                print(f"round {rnd + 1}: {what}, {args.learners} learners at once each")
                results = await run_round(kinds, workdir, catalog, users, client)
                for kind in kinds:
                    rows[kind].append(summary(kind, results[kind], args.learners))
    finally:
        await asyncio.to_thread(cleanup, client)
        for v in client.volumes().get("Volumes") or []:
            if v["Name"].startswith(SESSION):
                client.remove_volume(v["Name"], force=True)

    def mean(kind, key):
        return statistics.mean(r[key] for r in rows[kind])

    print("\nsummary (mean over rounds)")
    for kind in ("stock", "course"):
        print(
            f"{kind:>7}: ok {mean(kind, 'ok'):.1f}/{args.learners}, p50 {mean(kind, 'p50'):.2f}s, "
            f"p95 {mean(kind, 'p95'):.2f}s, idle memory {mean(kind, 'memory'):.0f} MiB/container"
        )
    p50 = mean("course", "p50") / mean("stock", "p50")
    p95 = mean("course", "p95") / mean("stock", "p95")
    print(f"  ratio course/stock: p50 {p50:.2f}x, p95 {p95:.2f}x (goal: p95 <= 1.10x)")
    paired = [c["p95"] / s["p95"] for c, s in zip(rows["course"], rows["stock"], strict=True)]
    print(
        "  p95 ratio per round (same machine load within a round): "
        + ", ".join(f"{r:.2f}x" for r in paired)
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
