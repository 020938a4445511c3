"""Class-start storm: N learners start their course server at the same moment.

Runs the same storm twice in one run, on two real hubs with their real proxies:

- baseline: JupyterHub's stock ``SimpleLocalProcessSpawner`` (same command, same kernel);
- course:   ``CourseLocalSpawner`` (enrollment and window checks, workspace, read-only
  materials mount, course environment).

Prints success count, p50/p95 time-to-ready for each, and the course/stock ratio.

    python -m tests.benchmarks.bench_spawn_storm [--learners 50]
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

from tests.conftest import day, write_catalog
from tests.hubtest import HubProcess

STOCK_CONFIG = f"""
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--ServerApp.allow_root=True"]
"""
COMMON_CONFIG = """
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 600
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
"""


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


async def storm(hub: HubProcess, users: list[str], course: str, timeout: float) -> dict:
    """Start every user's ``course`` server at once; time each until the hub says ready."""
    t0 = time.monotonic()
    responses = await asyncio.gather(
        *(hub.api("POST", f"/users/{u}/servers/{course}") for u in users), return_exceptions=True
    )
    failed = {
        u
        for u, r in zip(users, responses, strict=True)
        if isinstance(r, Exception) or r.status_code >= 400
    }
    ready: dict[str, float] = {}
    while time.monotonic() - t0 < timeout and len(ready) + len(failed) < len(users):
        try:  # 50 servers starting at once leave the hub little CPU: it may answer slowly
            r = await hub.api("GET", "/users", params={"state": "ready"}, timeout=120)
        except httpx.TimeoutException:
            continue
        now = time.monotonic() - t0
        for model in r.json():
            if course in model.get("servers", {}) and model["name"] not in ready:
                ready[model["name"]] = now
        await asyncio.sleep(0.1)
    missing = [u for u in users if u not in ready]
    if missing:  # say why, from the hub's own log
        log = hub.log_path.read_text(errors="replace").splitlines()
        for u in missing:
            reasons = [line for line in log if u in line and ("[E " in line or "[W " in line)]
            print(f"  {u} not ready: {reasons[-1] if reasons else 'no error in the hub log'}")
    await hub.stop_all_servers()
    times = list(ready.values())
    return {
        "ok": len(times),
        "n": len(users),
        "p50": percentile(times, 50) if times else float("nan"),
        "p95": percentile(times, 95) if times else float("nan"),
        "mean": statistics.fmean(times) if times else float("nan"),
    }


async def main(learners: int, timeout: float, rounds: int) -> None:
    users = [f"learner{i:03d}" for i in range(learners)]
    with tempfile.TemporaryDirectory(prefix="storm-") as tmp:
        tmp = Path(tmp)
        catalog = write_catalog(
            tmp / "catalog",
            [
                {
                    "id": "ds101",
                    "title": "Storm",
                    "opens": day(-1),
                    "closes": day(30),
                    "materials": "materials/ds101",
                    "learners": users,
                }
            ],
        )
        results: dict[str, dict] = {}
        configs = {"stock": STOCK_CONFIG, "course": ""}
        # stock, course, course, stock, ...: neither side always runs on a warmer machine
        order = [
            label
            for i in range(rounds)
            for label in (("stock", "course") if i % 2 == 0 else ("course", "stock"))
        ]
        for i, label in enumerate(order):
            hub = HubProcess(
                tmp / f"{label}-{i}", catalog, extra_config=COMMON_CONFIG + configs[label]
            )
            await hub.start()
            try:
                if label == "stock":
                    await hub.api("POST", "/users", json={"usernames": users})
                else:
                    for u in users:  # the dev login gives each learner their course groups
                        await (await hub.login(u)).aclose()
                r = await storm(hub, users, "ds101", timeout)
            finally:
                await hub.shutdown()
            print(
                f"{label:>7}: {r['ok']}/{r['n']} ready   p50 {r['p50']:.2f}s   p95 {r['p95']:.2f}s",
                flush=True,
            )
            total = results.setdefault(label, {"ok": 0, "n": 0, "p50": [], "p95": []})
            total["ok"] += r["ok"]
            total["n"] += r["n"]
            total["p50"].append(r["p50"])
            total["p95"].append(r["p95"])
        p50 = {k: statistics.fmean(v["p50"]) for k, v in results.items()}
        p95 = {k: statistics.fmean(v["p95"]) for k, v in results.items()}
        for label in ("stock", "course"):
            print(
                f"{label:>7} over {rounds} round(s): {results[label]['ok']}/{results[label]['n']} ready, "
                f"mean p50 {p50[label]:.2f}s, mean p95 {p95[label]:.2f}s"
            )
        print(
            f"  ratio course/stock: p95 {p95['course'] / p95['stock']:.3f} (goal <= 1.1), "
            f"p50 {p50['course'] / p50['stock']:.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a storm")
    parser.add_argument(
        "--rounds", type=int, default=2, help="storms per spawner, in alternating order"
    )
    args = parser.parse_args()
    asyncio.run(main(args.learners, args.timeout, args.rounds))
