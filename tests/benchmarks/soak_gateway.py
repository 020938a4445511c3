"""Soak: many sequential requests on ONE kernel, bare kernel gateway vs our guarded one.

    .venv/bin/python tests/benchmarks/soak_gateway.py [--requests 50000] [--target both|ours|bare]
                                                      [--recycle N] [--timeout 30]

The notebook (``tests/notebooks/soak.ipynb``) has one route with a ResponseInfo cell:
three cell executions per request in stock notebook-http, two in ours (the REQUEST
assignment travels with the cell). Stock notebook-http (jupyter-kernel-gateway 3.0.1) sends each request's cells but never
reads their shell replies; on this kind of machine it stalls for good near request 14,600
(about 43,700 cell executions). Our personality reads every reply, so it should finish
all ``--requests`` with none hung. By default kernel recycling is OFF here
(``--recycle 0``), so the run shows that reading the replies alone is the fix; pass
``--recycle 5000`` to soak the production setting.

A request that gets no answer within ``--timeout`` seconds counts as hung; the bare run
stops at its first hung request and reports where. Too long for CI (50,000 requests take
roughly 10 minutes per target at ~80-100 requests/s); run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub_ext.services.analytics.launch import gateway_spec  # noqa: E402
from hub_ext.services.analytics.supervisor import default_gateway_options  # noqa: E402
from tests.benchmarks.bench_analytics import Conn, free_port, wait_http  # noqa: E402

NOTEBOOK = REPO / "tests" / "notebooks" / "soak.ipynb"


async def soak(port: int, headers: dict, requests: int, timeout: float, label: str) -> dict:
    conn = Conn("127.0.0.1", port, headers)
    hung = errors = 0
    t0 = time.perf_counter()
    stalled_at = None
    for i in range(1, requests + 1):
        try:
            status = await conn.get("/hello", timeout)
            if status != 200:
                errors += 1
        except TimeoutError:
            hung += 1
            stalled_at = i
            conn.close()
            print(f"  {label}: request {i} hung (> {timeout:g}s)", flush=True)
            if label == "bare":
                break
        except (ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
            errors += 1
            conn.close()
        if i % 2000 == 0:
            rate = i / (time.perf_counter() - t0)
            print(
                f"  {label}: {i} requests, {rate:.0f}/s, {errors} errors, {hung} hung", flush=True
            )
    conn.close()
    elapsed = time.perf_counter() - t0
    return {"done": i, "errors": errors, "hung": hung, "stalled_at": stalled_at, "seconds": elapsed}


def start(argv, env, log) -> subprocess.Popen:
    return subprocess.Popen(
        argv, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--target", choices=("both", "ours", "bare"), default="both")
    parser.add_argument(
        "--recycle", type=int, default=0, help="max_requests_per_kernel for ours (0: never)"
    )
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    results = {}
    if args.target in ("both", "ours"):
        port = free_port()
        options = {**default_gateway_options(), "pool_size": 1}
        options["max_requests_per_kernel"] = args.recycle
        # our gateway as the supervisor builds it, unsandboxed and on TCP (the load
        # generator speaks TCP): the same application and personality
        spec = gateway_spec(
            "soak", "soak", NOTEBOOK, version="soak", token="soak-token", scratch=tmp / "rt",
            python=sys.executable, seen_at=lambda source, target: str(source),
            log_level="WARN", **options,
        )  # fmt: skip
        argv = [a for a in spec.argv if not a.startswith("--SocketGatewayApp.unix_socket=")]
        argv += ["--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}"]
        (tmp / "rt").mkdir(mode=0o700)
        env = {**spec.env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        proc = start(argv, env, tmp / "ours.log")
        try:
            headers = {"Authorization": "token soak-token"}
            await wait_http(port, "/hello", headers)
            print(
                f"ours (recycle={args.recycle}): {args.requests} requests on one kernel", flush=True
            )
            results["ours"] = await soak(port, headers, args.requests, args.timeout, "ours")
        finally:
            stop(proc)
    if args.target in ("both", "bare"):
        port = free_port()
        argv = [
            sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.api=kernel_gateway.notebook_http",
            f"--KernelGatewayApp.seed_uri={NOTEBOOK}", "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={port}", "--KernelGatewayApp.port_retries=0",
            "--KernelGatewayApp.prespawn_count=1", "--KernelGatewayApp.log_level=WARN",
        ]  # fmt: skip
        proc = start(
            argv, {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "rt-bare")}, tmp / "bare.log"
        )
        try:
            await wait_http(port, "/hello", {})
            print(f"bare: {args.requests} requests on one kernel", flush=True)
            results["bare"] = await soak(port, {}, args.requests, args.timeout, "bare")
        finally:
            stop(proc)
    print("\nresult")
    for label, r in results.items():
        where = f", stalled at request {r['stalled_at']}" if r["stalled_at"] else ""
        print(
            f"  {label:<5} {r['done']} requests in {r['seconds']:.0f}s ({r['done'] / r['seconds']:.0f}/s), "
            f"{r['errors']} errors, {r['hung']} hung{where}"
        )


if __name__ == "__main__":
    asyncio.run(main())
