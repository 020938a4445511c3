"""Analytics APIs benchmark: bare kernel gateway vs ours (cache missed / hit) vs plain Tornado.

    .venv/bin/python tests/benchmarks/bench_analytics.py [--seconds 3] [--kernels 1]

In one run, on one notebook (``tests/notebooks/pandas_agg.ipynb``: a trivial route
``/hello`` and a 100k-row pandas aggregation ``/summary``):

- **bare**: stock ``kernel_gateway.notebook_http`` (jupyter-kernel-gateway 3.0.1), called directly;
- **miss**: a real JupyterHub with the analytics service; the service's own port (what the
  hub's proxy forwards to) with a teacher's hub token; every request has a new query
  string, so every one goes through our guarded gateway;
- **hit**: the same URL again and again (answered from the cache, ETag computed);
- **tornado**: the same code in a plain Tornado handler (a separate process);
- **hit+chp**: the cache hit through the hub's configurable-http-proxy (what callers get);

ours run in the sandbox (``c.GatewaySupervisor.sandbox``, ``auto``: bubblewrap here). Also
the **gateway start time** (publish to first answer), sandboxed vs unsandboxed (``none``),
as a ratio, over ``--starts`` publications each;

at concurrency 1, 8 and 32, for ``--seconds`` each: requests/s, p50/p99 latency, errors
and hung requests (none may be), and ratios against bare. Goals: miss >= 0.9x bare,
hit >= 20x bare. Bounded: about 24 x seconds + 30 s of start-up. The load generator is a
small keep-alive HTTP/1.1 client on asyncio (one connection per concurrent caller).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

NOTEBOOK = REPO / "tests" / "notebooks" / "pandas_agg.ipynb"
PANDAS_CODE = """
import json
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
DF = pd.DataFrame({'learner': rng.integers(0, 500, 100_000), 'clicks': rng.integers(1, 20, 100_000)})
def summary():
    out = DF.groupby('learner')['clicks'].sum().nlargest(5)
    return json.dumps({str(k): int(v) for k, v in out.items()})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the plain Tornado baseline


def serve_tornado(port: int) -> None:
    import json

    import tornado.ioloop
    import tornado.web

    namespace: dict = {}
    exec(PANDAS_CODE, namespace)

    class Hello(tornado.web.RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"hello": "world"}))

    class Summary(tornado.web.RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.finish(namespace["summary"]())

    app = tornado.web.Application([("/hello", Hello), ("/summary", Summary)])
    app.listen(port, "127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


# ------------------------------------------------------------------ load generator


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port, headers):
        self.host, self.port, self.headers = host, port, headers
        self.reader = self.writer = None

    async def get(self, path: str, timeout: float) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self.headers.items()
        )
        self.writer.write((head + "\r\n").encode())
        return await asyncio.wait_for(self._read(), timeout)

    async def _read(self) -> int:
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(
    host, port, path_of, headers, concurrency: int, seconds: float, timeout: float = 30.0
) -> dict:
    latencies: list[float] = []
    errors = hung = 0
    counter = 0
    end = time.perf_counter() + seconds

    async def worker():
        nonlocal errors, hung, counter
        conn = Conn(host, port, headers)
        while time.perf_counter() < end:
            counter += 1
            path = path_of(counter)
            t0 = time.perf_counter()
            try:
                status = await conn.get(path, timeout)
                if status != 200:
                    errors += 1
            except TimeoutError:
                hung += 1
                conn.close()
            except (ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
                errors += 1
                conn.close()
            latencies.append(time.perf_counter() - t0)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "n": n,
        "rps": n / elapsed,
        "p50": latencies[n // 2] * 1000 if n else float("nan"),
        "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "errors": errors,
        "hung": hung,
    }


# ------------------------------------------------------------------ the parts


async def wait_http(port: int, path: str, headers: dict, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if await Conn("127.0.0.1", port, headers).get(path, 5) == 200:
                return
        except (OSError, TimeoutError, ConnectionError, ValueError):
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"nothing answered 200 on {port}{path}")


def start(argv, log: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def start_times(root: Path, n: int) -> None:
    """Publish to first answer, in the sandbox and unsandboxed (the same supervisor code)."""
    from hub_ext.services.analytics.notebook import check_notebook
    from hub_ext.services.analytics.supervisor import GatewaySupervisor
    from tests.analytics_fixtures import gw_get

    nb = check_notebook(REPO / "tests" / "notebooks" / "trivial.ipynb")
    times: dict[str, list[float]] = {}
    for kind in ("none", "bubblewrap") * n:
        sup = GatewaySupervisor(
            pool_size=1, runtime_dir=str(root / kind), data_root=str(root / "data"), sandbox=kind
        )
        started = time.perf_counter()
        try:
            gw = await sup.publish("ds101", "know", nb)
            assert (await gw_get(gw, "/hello")).status_code == 200
            times.setdefault(kind, []).append(time.perf_counter() - started)
        finally:
            await sup.stop_all()
    none, sandboxed = (sorted(times[k])[len(times[k]) // 2] for k in ("none", "bubblewrap"))
    print(
        f"gateway start (publish to first answer, median of {n}): unsandboxed {none:.2f}s, "
        f"bubblewrap {sandboxed:.2f}s, ratio {sandboxed / none:.2f}x"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--kernels", type=int, default=1, help="kernels per gateway (default 1)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--starts", type=int, default=3, help="publications timed per sandbox")
    parser.add_argument("--sandbox", default="auto", help="ours: auto, bubblewrap, docker, none")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]

    from tests.analytics_fixtures import analytics_catalog, analytics_hub_config, make_store
    from tests.hubtest import HubProcess

    tmp = Path(tempfile.mkdtemp(prefix="bench-analytics-"))
    events = make_store(tmp / "events.db")
    await start_times(tmp / "starts", args.starts)
    procs = []
    hub = None
    try:
        # bare gateway
        bare_port = free_port()
        bare = start(
            [
                sys.executable, "-m", "kernel_gateway",
                "--KernelGatewayApp.api=kernel_gateway.notebook_http",
                f"--KernelGatewayApp.seed_uri={NOTEBOOK}",
                "--KernelGatewayApp.ip=127.0.0.1",
                f"--KernelGatewayApp.port={bare_port}",
                "--KernelGatewayApp.port_retries=0",
                f"--KernelGatewayApp.prespawn_count={args.kernels}",
                "--KernelGatewayApp.log_level=WARN",
            ],
            tmp / "bare.log",
        )  # fmt: skip
        procs.append(bare)
        # plain tornado
        tornado_port = free_port()
        procs.append(
            start(
                [sys.executable, __file__, "--serve-tornado", str(tornado_port)],
                tmp / "tornado.log",
            )
        )
        # a real hub with the analytics service
        svc_port = free_port()
        catalog = analytics_catalog(tmp / "catalog")
        extra = analytics_hub_config(
            catalog,
            tmp / "runtime",
            events,
            svc_port,
            **{
                "GatewaySupervisor.pool_size": args.kernels,
                "GatewaySupervisor.execution_timeout": 30.0,
                "GatewaySupervisor.queue_timeout": 30.0,
                "GatewaySupervisor.health_interval": 10.0,
                "GatewaySupervisor.sandbox": args.sandbox,
                "AnalyticsService.watermark_interval": 1.0,
                "AnalyticsService.hub_cache_max_age": 300,
                "Application.log_level": "WARN",
            },
        )
        hub = HubProcess(tmp / "hub", catalog, extra_config=extra)
        await hub.start()
        token = await hub.user_token("tina")
        auth = {"Authorization": f"token {token}"}
        import httpx

        async with httpx.AsyncClient(timeout=120) as c:
            r = await c.put(
                f"http://127.0.0.1:{svc_port}/services/analytics/_api/courses/ds101/apis/bench",
                content=NOTEBOOK.read_bytes(),
                headers=auth,
            )
            r.raise_for_status()
        await wait_http(bare_port, "/hello", {})
        await wait_http(tornado_port, "/hello", {})
        prefix = "/services/analytics/ds101/bench"
        await wait_http(svc_port, prefix + "/hello", auth)

        targets = {
            "bare": (bare_port, lambda route: lambda i: route, {}),
            "miss": (svc_port, lambda route: lambda i: f"{prefix}{route}?n={i}", auth),
            "hit": (svc_port, lambda route: lambda i: f"{prefix}{route}", auth),
            "tornado": (tornado_port, lambda route: lambda i: route, {}),
            # the cache hit again, through the hub's configurable-http-proxy (what users get)
            "hit+chp": (hub.port, lambda route: lambda i: f"{prefix}{route}", auth),
        }
        results = {}
        print(
            f"kernels per gateway: {args.kernels}; {args.seconds:g}s per cell; 2-core machine shared"
        )
        print(
            f"{'route':<9}{'target':<9}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}{'hung':>5}{'x bare':>9}"
        )
        for route in ("/hello", "/summary"):
            for conc in levels:
                for name, (port, path_of, headers) in targets.items():
                    res = await load("127.0.0.1", port, path_of(route), headers, conc, args.seconds)
                    results[(route, conc, name)] = res
                    ratio = res["rps"] / results[(route, conc, "bare")]["rps"]
                    print(
                        f"{route:<9}{name:<9}{conc:>5}{res['rps']:>10.1f}{res['p50']:>9.1f}{res['p99']:>9.1f}"
                        f"{res['errors']:>5}{res['hung']:>5}{ratio:>9.2f}",
                        flush=True,
                    )
        print("\nGoals: miss >= 0.9x bare, hit >= 20x bare, no hung or failed request")
        for route in ("/hello", "/summary"):
            for conc in levels:
                bare_rps = results[(route, conc, "bare")]["rps"]
                miss = results[(route, conc, "miss")]["rps"] / bare_rps
                hit = results[(route, conc, "hit")]["rps"] / bare_rps
                print(
                    f"  {route:<9} c={conc:<3} miss {miss:5.2f}x {'ok' if miss >= 0.9 else 'BELOW'}   "
                    f"hit {hit:7.1f}x {'ok' if hit >= 20 else 'BELOW'}"
                )
        bad = sum(r["errors"] + r["hung"] for k, r in results.items() if k[2] != "bare")
        bare_bad = sum(r["errors"] + r["hung"] for k, r in results.items() if k[2] == "bare")
        print(f"  failed or hung: ours/tornado {bad}, bare gateway {bare_bad}")
    finally:
        if hub is not None:
            await hub.shutdown()
        for p in procs:
            stop(p)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-tornado":
        serve_tornado(int(sys.argv[2]))
    else:
        asyncio.run(main())
