"""Ingestion benchmark: statements per second through the xAPI endpoint vs a raw bulk insert.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--statements 5000] [--skip-postgres]

For SQLite (a temp file) and PostgreSQL (Debian's package, started here on 127.0.0.1 in a
temp directory and stopped by PID), in the same run:

- baseline: a raw SQLAlchemy Core ``INSERT`` of the same rows, 100 per transaction;
- xAPI: the events service as its own process, fed by one client POSTing batches of 100
  (and by 4 concurrent clients), with validation, mapping, conflict checks and Basic auth.

Prints statements/s and the ratio xAPI / raw (the goal is at least 0.5). Then the OULAD
importer's peak memory on a 20,000-row and a 200,000-row click file (streaming means the
two are about the same). Bounded: a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import copy
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub_ext.services.events.models import Statement  # noqa: E402
from hub_ext.services.events.store import EventStore  # noqa: E402
from hub_ext.services.events.xapi import to_row, validate_statement  # noqa: E402
from tests.events_fixtures import OULAD, PostgresServer, free_port  # noqa: E402

BATCH = 100


def make_statements(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            "id": str(uuid.uuid4()),
            "actor": {"objectType": "Agent", "account": {"homePage": "https://moodle.example.org", "name": f"u{i % 500}"}},
            "verb": {"id": "http://id.tincanapi.com/verb/viewed", "display": {"en-US": "viewed"}},
            "object": {"objectType": "Activity", "id": f"https://moodle.example.org/mod/page/view.php?id={i % 200}",
                       "definition": {"name": {"en": f"Page {i % 200}"}}},
            "context": {"contextActivities": {"grouping": [{"id": "urn:hub-ext:course:ds101"}]}, "platform": "Moodle"},
            "timestamp": f"2026-09-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
        })  # fmt: skip
    return out


def raw_insert(url: str, statements: list[dict]) -> float:
    store = EventStore(url)
    store.create()
    rows = []
    for s in statements:
        s = copy.deepcopy(s)
        validate_statement(s)
        rows.append(to_row(s, stored=datetime.now(UTC), source="bench", course_id="ds101"))
    table = Statement.__table__
    t0 = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        with store.engine.begin() as conn:
            conn.execute(table.insert(), rows[i : i + BATCH])
    elapsed = time.perf_counter() - t0
    store.dispose()
    return len(rows) / elapsed


class Service:
    def __init__(self, url: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        store = EventStore(url)
        store.create()
        self.key, self.secret = store.add_source(f"bench-{uuid.uuid4().hex[:6]}", "ds101")
        store.dispose()
        self.log = open(workdir / f"service-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub_ext.services.events.service", f"--EventsService.db_url={url}",
             f"--EventsService.port={self.port}", "--EventsService.base_url=/", "--EventsService.record_hub_activity=False",
             "--EventsService.log_level=WARN"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/xAPI/about", timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the events service did not start") from None
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.log.close()


def post_all(service: Service, statements: list[dict], clients: int) -> float:
    """POST all statements in batches of 100 from ``clients`` threads; statements/s.

    The client is http.client with bodies encoded before the clock starts (as the raw
    baseline's rows are built before its clock starts): what is timed is the service.
    """
    auth = "Basic " + base64.b64encode(f"{service.key}:{service.secret}".encode()).decode()
    headers = {
        "X-Experience-API-Version": "1.0.3",
        "Content-Type": "application/json",
        "Authorization": auth,
    }
    bodies = [
        json.dumps(statements[i : i + BATCH]).encode() for i in range(0, len(statements), BATCH)
    ]
    errors = []

    def worker(mine):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        conn.connect()
        # TCP_NODELAY as curl (hence PHP LMS plugins) sets it: http.client sends a body over
        # 2000 bytes apart from the headers, which with Nagle meets the server's delayed ACK
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for body in mine:
            conn.request("POST", "/xAPI/statements", body=body, headers=headers)
            r = conn.getresponse()
            text = r.read()
            if r.status != 200:
                errors.append(text.decode(errors="replace"))
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(bodies[k::clients],)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(errors[0])
    return len(statements) / elapsed


def bench_backend(name: str, make_url, n: int, workdir: Path, repeat: int) -> None:
    """``repeat`` rounds of raw, xAPI 1 client, xAPI 4 clients, interleaved so that each
    round's three runs see the same load (the machine is shared); the median round ratio."""
    statements = make_statements(n)
    services = {clients: Service(make_url(f"http{clients}"), workdir) for clients in (1, 4)}
    raw_url = make_url("raw")  # like the services' stores, it grows round after round
    rounds = []
    try:
        for service in services.values():
            post_all(service, make_statements(BATCH), 1)  # warm: scrypt once, connections
        for _ in range(repeat):
            raw = raw_insert(raw_url, [dict(s, id=str(uuid.uuid4())) for s in statements])
            http = {
                clients: post_all(
                    service, [dict(s, id=str(uuid.uuid4())) for s in statements], clients
                )
                for clients, service in services.items()
            }
            rounds.append((raw, http[1], http[4]))
    finally:
        for service in services.values():
            service.stop()
    for raw, one, four in rounds:
        print(f"  {name:<11} raw Core insert {raw:>9,.0f} st/s | xAPI 1 client {one:>8,.0f} st/s "
              f"(ratio {one / raw:.2f}) | xAPI 4 clients {four:>8,.0f} st/s (ratio {four / raw:.2f})")  # fmt: skip
    r1 = statistics.median(one / raw for raw, one, _ in rounds)
    r4 = statistics.median(four / raw for raw, _, four in rounds)
    print(f"{name}: median ratio xAPI/raw {r1:.2f} (1 client), {r4:.2f} (4 clients); goal >= 0.5")


def importer_memory(workdir: Path) -> None:
    head = next((OULAD / "original_format").glob("studentVle*.csv"))
    lines = head.read_text().splitlines()
    header, body = lines[0], lines[1:]
    for rows in (20_000, 200_000):
        d = workdir / f"oulad-{rows}"
        d.mkdir()
        for name in ("courses", "assessments", "vle", "studentInfo", "studentRegistration"):
            os.symlink(OULAD / f"{name}.csv", d / f"{name}.csv")
        with open(d / "studentVle.csv", "w") as f:
            f.write(header + "\n")
            for i in range(rows):
                f.write(body[i % len(body)] + "\n")
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(
            [sys.executable, "-c",
             "import resource,sys; from hub_ext.cli import main; rc = main(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)",
             "import", "oulad", str(d), "--db", f"sqlite:///{d / 'e.db'}"],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        del before
        out = subprocess.run(
            [sys.executable, "-c",
             "import resource,sys; from hub_ext.cli import main; rc = main(sys.argv[1:]); "
             "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
             "import", "oulad", str(d), "--db", f"sqlite:///{d / 'e.db'}"],
            check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        rss = int(out.stderr.split("MAXRSS")[1].split()[0])
        print(f"importer: {rows:>7,} click rows + the small tables: peak RSS {rss / 1024:6.0f} MiB "
              f"(first import + re-import {time.perf_counter() - t0:5.1f}s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=5000)
    parser.add_argument(
        "--repeat", type=int, default=5, help="interleaved rounds (the median ratio is reported)"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-importer", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        print(f"{args.statements:,} statements, batches of {BATCH}")
        sqlite_url = lambda tag: f"sqlite:///{workdir / f'{tag}.sqlite'}"  # noqa: E731
        bench_backend("SQLite", sqlite_url, args.statements, workdir, args.repeat)
        if not args.skip_postgres:
            if not PostgresServer.available():
                print("PostgreSQL: not installed (apt-get install postgresql); skipped")
            else:
                server = PostgresServer()  # one server; a database per measurement
                base = server.start()

                def make_pg(tag):
                    from sqlalchemy import create_engine, text

                    engine = create_engine(base, isolation_level="AUTOCOMMIT")
                    with engine.connect() as conn:
                        conn.execute(text(f"CREATE DATABASE bench_{tag}"))
                    engine.dispose()
                    return base.rsplit("/", 1)[0] + f"/bench_{tag}"

                try:
                    bench_backend("PostgreSQL", make_pg, args.statements, workdir, args.repeat)
                finally:
                    server.stop()
        if not args.skip_importer:
            importer_memory(workdir)


if __name__ == "__main__":
    main()
