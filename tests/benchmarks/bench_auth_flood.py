"""Auth-flood benchmark: a valid writer's POST latency with and without a flood of bad credentials.

    .venv/bin/python tests/benchmarks/bench_auth_flood.py [--seconds 8] [--concurrency 200]
        [--floods plain,unknown-key,wrong-secret,mixed] [--service-pythonpath DIR]

The events service runs as its own process on 127.0.0.1 (a temp SQLite store), as under the
hub. A valid writer (one keep-alive connection, as an LMS's plugin keeps one) POSTs one
statement at a time, its credentials checked once before the clock starts. In one run:

- baseline: for ``--seconds``, a POST every ``--interval`` (0.05 s) with nothing else going on;
- then the same under each flood: ``--concurrency`` connections (200) sending requests back
  to back, each on a new connection, from this process (a thread of its own):

  - ``plain``: ``GET /xAPI/about`` (no credentials to check): what any HTTP flood of that
    rate costs the service's event loop and the machine's cores, the floor of the others;
  - ``unknown-key``: Basic credentials with a random key (and secret);
  - ``wrong-secret``: the writer's own key with a random wrong secret;
  - ``mixed``: half and half (the attack as it was reported).

Prints, per phase, the median and p95 latency of the valid writer and its ratio to the
baseline, and each flood's requests per second and answers. The ratio that matters is a bad
credentials flood's against the ``plain`` one: what credential checks add. Before the fix,
each bad credential cost a scrypt (~50 ms of a core) on the threads the store uses.
``--service-pythonpath`` runs the service from another checkout (an older commit) for a
before/after comparison; a POST still waiting when its phase ends is waited for (and
counted). Bounded: about a minute on 2 cores (more for a service that stalls).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub_ext.services.events.store import EventStore  # noqa: E402
from tests.events_fixtures import free_port  # noqa: E402


def statement() -> bytes:
    return json.dumps({
        "id": str(uuid.uuid4()),
        "actor": {"account": {"homePage": "https://moodle.example.org", "name": "ada"}},
        "verb": {"id": "http://id.tincanapi.com/verb/viewed"},
        "object": {"id": "https://moodle.example.org/mod/page/view.php?id=1"},
        "context": {"contextActivities": {"grouping": [{"id": "urn:hub-ext:course:ds101"}]}},
    }).encode()  # fmt: skip


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


class Service:
    """The events service as its own process, stopped by PID."""

    def __init__(self, workdir: Path, pythonpath: str | None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        db = f"sqlite:///{workdir / 'events.sqlite'}"
        store = EventStore(db)
        store.create()
        self.key, self.secret = store.add_source("bench-lms", "ds101")
        store.dispose()
        env = dict(os.environ)
        env["PYTHONPATH"] = pythonpath or str(REPO)
        self.log = open(workdir / "service.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub_ext.services.events.service", f"--EventsService.db_url={db}",
             f"--EventsService.port={self.port}", "--EventsService.base_url=/", "--EventsService.record_hub_activity=False",
             "--EventsService.log_level=ERROR"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/xAPI/about", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the events service did not start") from None
                time.sleep(0.1)
        time.sleep(2.5)  # past the first sources refresh: the source is known

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


class Writer:
    """One keep-alive connection posting one statement at a time; latencies in seconds."""

    def __init__(self, service: Service):
        self.conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=300)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {
            "X-Experience-API-Version": "1.0.3",
            "Content-Type": "application/json",
            "Authorization": basic(service.key, service.secret),
        }

    def post(self) -> float:
        body = statement()
        t0 = time.perf_counter()
        self.conn.request("POST", "/xAPI/statements", body=body, headers=self.headers)
        r = self.conn.getresponse()
        text = r.read()
        elapsed = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"a valid POST got {r.status}: {text[:300]!r}")
        return elapsed

    def run(self, seconds: float, interval: float = 0.05) -> list[float]:
        """POST one statement every ``interval`` for ``seconds``; the latencies."""
        out, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(self.post())
            time.sleep(interval)
        return out


class Flood:
    """``concurrency`` connections sending bad credentials back to back, in a thread."""

    def __init__(self, service: Service, concurrency: int, kind: str):
        self.service, self.concurrency, self.kind = service, concurrency, kind
        self.answers: collections.Counter = collections.Counter()
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.body = statement()

    def request(self, i: int) -> bytes:
        if self.kind == "plain":
            return (
                f"GET /xAPI/about HTTP/1.1\r\nHost: 127.0.0.1:{self.service.port}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        unknown = self.kind == "unknown-key" or (self.kind == "mixed" and i % 2 == 0)
        key = secrets.token_urlsafe(12) if unknown else self.service.key
        auth = basic(key, secrets.token_urlsafe(32))
        head = (
            f"POST /xAPI/statements HTTP/1.1\r\nHost: 127.0.0.1:{self.service.port}\r\n"
            f"X-Experience-API-Version: 1.0.3\r\nContent-Type: application/json\r\n"
            f"Authorization: {auth}\r\nContent-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + self.body

    async def _one(self, i: int) -> None:
        n = i
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.service.port)
                writer.write(self.request(n))
                await writer.drain()
                data = await reader.read()
                writer.close()
                status = int(data.split(b" ", 2)[1]) if data else 0
            except (OSError, ValueError, IndexError):
                status = 0
            self.answers[status] += 1
            n += self.concurrency

    async def _main(self) -> None:
        tasks = [asyncio.ensure_future(self._one(i)) for i in range(self.concurrency)]
        self.started.set()
        await asyncio.gather(*tasks)

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.thread.start()
        self.started.wait()
        time.sleep(0.5)  # all connections in flight
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(300)
        self.elapsed = time.perf_counter() - self.t0


def summary(latencies: list[float]) -> tuple[float, float]:
    ms = sorted(1000 * x for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return statistics.median(ms), p95


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8, help="length of a phase (default 8)")
    ap.add_argument("--interval", type=float, default=0.05,
                    help="pause between the valid writer's POSTs, in seconds (default 0.05)")  # fmt: skip
    ap.add_argument("--concurrency", type=int, default=200, help="flood connections (default 200)")
    ap.add_argument("--floods", default="plain,unknown-key,wrong-secret,mixed",
                    help="the floods to run, in order (default plain,unknown-key,wrong-secret,mixed)")  # fmt: skip
    ap.add_argument("--service-pythonpath", help="run the service from this tree instead")
    args = ap.parse_args()
    floods = [f for f in args.floods.split(",") if f]
    unknown = set(floods) - {"plain", "unknown-key", "wrong-secret", "mixed"}
    if unknown:
        ap.error(f"unknown flood {sorted(unknown)[0]!r}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-auth-flood-") as tmp:
        service = Service(Path(tmp), args.service_pythonpath)
        try:
            writer = Writer(service)
            writer.run(1, args.interval)  # verified, as an LMS's are after its first POST
            base = writer.run(args.seconds, args.interval)
            for kind in floods:
                with Flood(service, args.concurrency, kind) as flood:
                    got = writer.run(args.seconds, args.interval)
                results.append((kind, got, flood))
                writer.run(1, args.interval)  # the service settles between floods
        finally:
            service.stop()
    b50, b95 = summary(base)
    print(f"service from {args.service_pythonpath or REPO}; {args.concurrency} flood connections")
    print(f"{'phase':<14}{'median ms':>10}{'p95 ms':>10}{'x median':>10}{'x p95':>8}"
          f"{'POSTs':>7}  flood")  # fmt: skip
    print(f"{'baseline':<14}{b50:>10.1f}{b95:>10.1f}{1:>10.1f}{1:>8.1f}{len(base):>7}")
    medians = {}
    for kind, got, flood in results:
        f50, f95 = summary(got)
        medians[kind] = f50
        sent = sum(flood.answers.values())
        print(f"{kind:<14}{f50:>10.1f}{f95:>10.1f}{f50 / b50:>10.1f}{f95 / b95:>8.1f}{len(got):>7}"
              f"  {sent / flood.elapsed:.0f} req/s, answers {dict(sorted(flood.answers.items()))}")  # fmt: skip
    if "plain" in medians:
        for kind in [k for k in medians if k != "plain"]:
            print(f"{kind} flood / plain flood (median): {medians[kind] / medians['plain']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
