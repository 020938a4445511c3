"""Fixtures for the event store, importers and notebooks (import them from your test module).

OULAD (Kuzilek J., Hlosta M., Zdrahal Z. (2017), "Open University Learning Analytics
dataset", Scientific Data 4:170171, doi:10.1038/sdata.2017.171, CC BY 4.0) is read from
``../shared/data/oulad`` (``HUB_EXT_DATA`` overrides ``../shared/data``): its full small
tables and the 13,905-row head of the click table, imported once per test session.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from hub_ext.services.events.importers import import_oulad
from hub_ext.services.events.store import EventStore
from tests.postgres_fixtures import PostgresServer, new_database, postgres_url  # noqa: F401 (moved there)

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HUB_EXT_DATA", REPO.parent / "shared" / "data"))
OULAD = DATA / "oulad"
NOTEBOOKS = REPO / "kernelgateway_notebooks"


def oulad_dir() -> Path:
    if not (OULAD / "studentInfo.csv").is_file():
        pytest.fail(f"OULAD is not at {OULAD} (set HUB_EXT_DATA to the shared data directory)")
    return OULAD


@pytest.fixture(scope="session")
def oulad_store(tmp_path_factory) -> EventStore:
    """A SQLite store holding the OULAD import (small tables + click-table head)."""
    path = tmp_path_factory.mktemp("oulad") / "events.db"
    store = EventStore(f"sqlite:///{path}")
    report = import_oulad(store, oulad_dir())
    assert report.problem_count == 0, report.problems
    store.report = report
    yield store
    store.dispose()


class OuladFacts:
    """Figures computed straight from the CSV files with the csv module (no importer code)."""

    def __init__(self, directory: Path):
        self.dir = directory

    def rows(self, name: str):
        path = self.dir / f"{name}.csv"
        if not path.exists():
            path = next((self.dir / "original_format").glob(f"{name}*.csv"))
        with open(path, newline="") as f:
            yield from csv.DictReader(f)

    def registrations(self, module=None, presentation=None) -> int:
        return sum(1 for r in self.rows("studentRegistration") if self._in(r, module, presentation))

    def final_results(self, module=None, presentation=None) -> Counter:
        return Counter(
            r["final_result"] for r in self.rows("studentInfo") if self._in(r, module, presentation)
        )

    @staticmethod
    def _in(row, module, presentation) -> bool:
        return (module is None or row["code_module"] == module) and (
            presentation is None or row["code_presentation"] == presentation
        )


@pytest.fixture(scope="session")
def oulad_facts() -> OuladFacts:
    return OuladFacts(oulad_dir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def running_service(directory: Path, **traits):
    """A real events service in this process: a tornado server on a loopback port, its store
    a SQLite file in ``directory``, under the hub's prefix ``/services/events/``; no hub
    activity poller. ``traits`` set ``EventsService`` options. Yields the application
    (``app.url``, ``app.store``) and stops the server on exit."""
    from traitlets.config import Config

    from hub_ext.services.events.service import EventsService

    c = Config()
    c.EventsService.db_url = f"sqlite:///{directory / 'events.db'}"
    c.EventsService.ip = "127.0.0.1"
    c.EventsService.port = free_port()
    c.EventsService.base_url = "/services/events/"
    c.EventsService.record_hub_activity = False
    for name, value in traits.items():
        setattr(c.EventsService, name, value)
    app = EventsService(config=c)
    app.initialize([])
    server = await app.start_async()
    try:
        yield app
    finally:
        server.stop()
        await server.close_all_connections()
        await app.stop_async()
        app.store.dispose()


class Gateway:
    """A bare jupyter-kernel-gateway (notebook-http) serving one notebook, stopped by PID."""

    def __init__(self, notebook: Path, env: dict[str, str], workdir: Path):
        self.notebook, self.env, self.workdir = notebook, env, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"kg-{notebook.stem}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, **self.env}
        cmd = [
            sys.executable, "-m", "jupyter", "kernelgateway",
            "--KernelGatewayApp.api=kernel_gateway.notebook_http",
            f"--KernelGatewayApp.seed_uri={self.notebook}",
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={self.port}",
            "--KernelGatewayApp.port_retries=0",
        ]  # fmt: skip
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._logf, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"kernel gateway exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                httpx.get(self.url + "/_api/spec/swagger.json", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"kernel gateway did not answer within {timeout}s:\n{self.log_tail()}")

    def get(self, path: str, **params) -> httpx.Response:
        return _get_showing_log(self, httpx.get, self.url + path, params, timeout=180)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._logf.close()
        self.proc = None


def _get_showing_log(gateway, get, url: str, params: dict, **kwargs) -> httpx.Response:
    """``get(url)``; the gateway's log goes with a failure (and with a 5xx answer)."""
    try:
        response = get(url, params=params or None, **kwargs)
    except httpx.HTTPError as e:
        raise AssertionError(f"GET {url} failed: {e!r}\ngateway log:\n{gateway.log_tail()}") from e
    if response.status_code >= 500:
        print(
            f"gateway log ({gateway.notebook.name}):\n{gateway.log_tail()}"
        )  # shown with a failure
    return response


class SandboxedGateways:
    """The analytics service's own way of running notebooks, for sync tests: the course's
    read-only extract built from ``store``, and a gateway supervisor (bubblewrap sandbox)
    on an event loop of its own thread. :meth:`start` gives an object with ``get`` and
    ``log_tail`` like :class:`Gateway`'s."""

    def __init__(self, store: EventStore, course: str, workdir: Path, sandbox: str = "bubblewrap"):
        import asyncio
        import threading

        from hub_ext.services.analytics.extracts import CourseExtracts
        from hub_ext.services.analytics.supervisor import GatewaySupervisor

        self.course = course
        runtime = workdir / "runtime"
        CourseExtracts(store_url=store.readonly_url, root=str(runtime / "data")).build(course)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make():
            return GatewaySupervisor(
                pool_size=1,
                runtime_dir=str(runtime),
                sandbox=sandbox,
                execution_timeout=170.0,
                queue_timeout=170.0,
                health_interval=30.0,
                health_timeout=30.0,
            )

        self.supervisor = self._run(make())

    def _run(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start(self, notebook: str):
        from hub_ext.services.analytics.notebook import check_notebook

        nb = check_notebook(NOTEBOOKS / notebook)
        name = Path(notebook).stem.replace("_", "-")
        return _SandboxedGateway(self._run(self.supervisor.publish(self.course, name, nb)))

    def stop(self) -> None:
        self._run(self.supervisor.stop_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class _SandboxedGateway:
    def __init__(self, gateway):
        self.gateway = gateway
        self.notebook = gateway.spec.notebook
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(gateway.spec.socket)),
            headers={"Authorization": f"token {gateway.spec.token}"},
            timeout=180,
        )

    def get(self, path: str, **params) -> httpx.Response:
        return _get_showing_log(self, self.client.get, self.gateway.spec.url + path, params)

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.gateway.process.log_tail().splitlines()[-n:])

    def stop(self) -> None:
        self.client.close()


def start_gateway(
    notebook: str, store: EventStore, course: str, workdir: Path, *, url: str | None = None
) -> Gateway:
    """A gateway of ``notebook`` reading ``store`` (or the database at ``url``, a course's
    extract) for ``course``."""
    gw = Gateway(
        NOTEBOOKS / notebook,
        # the checkout under test, not whichever one the environment's editable install names
        {
            "HUB_EXT_EVENTS_URL": url or store.readonly_url,
            "COURSE_ID": course,
            "PYTHONPATH": str(REPO),
        },
        workdir,
    )
    gw.start()
    return gw


#: the xAPI version header every request of a client carries
XAPI_HEADERS = {"X-Experience-API-Version": "1.0.3"}


def postgres_database(server_url: str, name: str) -> str:
    """A new database named after ``name`` in the PostgreSQL server of ``server_url``; its URL."""
    return new_database(server_url, name)


@contextlib.asynccontextmanager
async def xapi_clients(kind: str, request, directory: Path, name: str, courses=("ds101",)):
    """A real events service on ``kind`` (``sqlite``: a file in ``directory``;
    ``postgresql``: a new database ``name`` in the session's PostgreSQL server) with one
    source per course of ``courses``: yields ``{course: httpx.AsyncClient}``, each client on
    the xAPI root with its source's credentials (``client.app`` is the service)."""
    traits = {}
    if kind == "postgresql":
        traits["db_url"] = postgres_database(request.getfixturevalue("postgres_url"), name)
    async with running_service(directory, **traits) as app:
        clients = {}
        async with contextlib.AsyncExitStack() as stack:
            for course in courses:
                key, secret = app.store.add_source(f"lms-{course}", course_id=course)
                client = await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=app.url + "/services/events/xAPI",
                        headers=XAPI_HEADERS,
                        auth=httpx.BasicAuth(key, secret),
                        timeout=60,
                    )
                )
                client.app = app
                clients[course] = client
            yield clients


def two_courses_lms():
    """A fixture for a test module (``lms = two_courses_lms()``, with ``postgres_url``
    imported): ``{"ds101": client, "stat200": client}``, one real events service per module
    and store (SQLite, and a database named after the module in the session's PostgreSQL)
    with a source of each course (:func:`xapi_clients`)."""

    @pytest_asyncio.fixture(
        scope="module", loop_scope="session", params=["sqlite", "postgresql"], name="lms"
    )
    async def lms(request, tmp_path_factory):
        name = request.module.__name__.rsplit(".", 1)[-1]
        directory = tmp_path_factory.mktemp(f"{name}-{request.param}")
        async with xapi_clients(
            request.param, request, directory, name, courses=("ds101", "stat200")
        ) as clients:
            yield clients

    return lms


async def poll_since(client, since: str | None, into: list, **params) -> str:
    """One poll of a client syncing by Consistent-Through: the statements stored after
    ``since`` (all, at first), oldest first, following ``more``, their ids appended to
    ``into``; returns the answer's ``X-Experience-API-Consistent-Through``, the next poll's
    ``since``. ``client`` is an httpx client on the service's xAPI root."""
    query = {**params, "ascending": "true", **({"since": since} if since else {})}
    path, header = "/statements", None
    while path:
        r = await client.get(path, params=query)
        assert r.status_code == 200, r.text
        header = r.headers["X-Experience-API-Consistent-Through"]
        body = r.json()
        into.extend(s["id"] for s in body["statements"])
        path = body["more"].removeprefix("/services/events/xAPI")
        query = None
    return header
