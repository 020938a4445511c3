"""Fixtures for the analytics tests: a small event store, a gateway supervisor, helpers.

Import the fixtures in a test module (``from tests.analytics_fixtures import *``); they are
not in conftest.py so the other suites do not load them.

The event store here is a real (empty) store the tests fill with a few statements. A
gateway reads its course's extract through the read-only URL it gets as
``HUB_EXT_EVENTS_URL``; the supervisor tests write that extract themselves, the hub tests
let the analytics service build it from the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from hub_ext.services.analytics.notebook import check_notebook
from hub_ext.services.analytics.supervisor import GatewaySupervisor
from hub_ext.services.events.store import EventStore

__all__ = [
    "NOTEBOOKS",
    "add_events",
    "events_db",
    "pid_alive",
    "supervisor",
    "supervisor_factory",
    "gw_get",
    "gateway_http",
    "kill",
    "make_store",
    "publish",
    "readonly_url",
    "analytics_catalog",
    "analytics_hub_config",
    "wait_until",
]

NOTEBOOKS = Path(__file__).parent / "notebooks"


def add_events(path: Path, rows, course: str = "ds101") -> None:
    """Add statements (learner, verb, stored) of ``course`` to the store or extract at ``path``."""
    with sqlite3.connect(path) as db:
        for learner, verb, stored in rows:
            statement_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO statements (id, course_id, learner, actor_key, verb, object_type,"
                " object_id, timestamp, stored, day, clicks, source, voided, raw)"
                " VALUES (?, ?, ?, ?, ?, 'Activity', ?, ?, ?, 0, 1, 'test', 0, ?)",
                (
                    statement_id,
                    course,
                    learner,
                    f"account:https://hub.test|{learner}",
                    verb,
                    f"https://lms.test/{course}/page",
                    stored,
                    stored,
                    json.dumps({"id": statement_id, "verb": {"id": verb}}),
                ),
            )


def make_store(path: Path) -> Path:
    """An empty event store (the real schema) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = EventStore(f"sqlite:///{path}")
    store.create()
    store.dispose()
    with sqlite3.connect(path) as db:  # as an extract is: readable from a read-only mount
        db.execute("PRAGMA journal_mode=DELETE")
    return path


@pytest.fixture
def events_db(tmp_path) -> Path:
    """ds101's extract as its gateways see it (``<data_root>/ds101/events.sqlite``): alice x2."""
    path = make_store(tmp_path / "data" / "ds101" / "events.sqlite")
    add_events(
        path,
        [("alice", "viewed", "2026-10-01 10:00:00"), ("alice", "answered", "2026-10-01 10:05:00")],
    )
    return path


def readonly_url(path: Path) -> str:
    return f"sqlite:///file:{path}?mode=ro&uri=true"


@pytest.fixture
async def supervisor_factory(tmp_path, events_db):
    """Make GatewaySupervisors with short timeouts; every gateway is stopped afterwards."""
    made = []

    def make(**overrides) -> GatewaySupervisor:
        options = dict(
            pool_size=1,
            execution_timeout=3.0,
            queue_timeout=1.5,
            interrupt_grace=2.0,
            setup_timeout=60.0,
            ready_timeout=60.0,
            health_interval=0.5,
            health_timeout=3.0,
            health_failures=2,
            max_backoff=2.0,
            runtime_dir=str(tmp_path / f"runtime{len(made)}"),
            data_root=str(events_db.parent.parent),
            # these tests signal kernels by the pid they report, which only the host's
            # PID namespace makes meaningful: the sandboxed runs are in test_sandbox.py
            sandbox="none",
        )
        options.update(overrides)
        sup = GatewaySupervisor(**options)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        await sup.stop_all()


@pytest.fixture
async def supervisor(supervisor_factory):
    return supervisor_factory()


async def publish(sup: GatewaySupervisor, name: str, course: str = "ds101", api: str | None = None):
    nb = check_notebook(NOTEBOOKS / f"{name}.ipynb")
    return await sup.publish(course, api or name.replace("_", "-"), nb)


async def gw_get(
    gateway, path: str, method: str = "GET", timeout: float = 30.0, **kwargs
) -> httpx.Response:
    """Call a gateway directly, with its token (what the front door does)."""
    headers = {"Authorization": f"token {gateway.spec.token}", **kwargs.pop("headers", {})}
    async with gateway_http(gateway, timeout=timeout) as client:
        return await client.request(method, gateway.spec.url + path, headers=headers, **kwargs)


def gateway_http(gateway, timeout: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client to the gateway's Unix socket."""
    transport = httpx.AsyncHTTPTransport(uds=str(gateway.spec.socket))
    return httpx.AsyncClient(transport=transport, timeout=timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def wait_until(
    predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
):
    """Poll an (async or plain) predicate; fail the test with ``what`` if it never holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def kill(pid: int, sig=signal.SIGKILL) -> None:
    os.kill(pid, sig)


# ------------------------------------------------------------------ a real hub with the service


def analytics_catalog(
    directory: Path, *, notebooks: tuple[str, ...] = (), learners: tuple[str, ...] = ("alice",)
) -> Path:
    """ds101 (teacher tina, ``learners``) publishes trivial.ipynb as 'know', and each of
    ``notebooks`` (test notebooks, by stem) under its own name first; stat200 (sam) none."""
    import shutil
    from datetime import UTC, datetime, timedelta

    import yaml

    def day(offset):
        return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOKS / "trivial.ipynb", directory / "know.ipynb")
    for name in notebooks:
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", directory / f"{name}.ipynb")
    courses = [
        {
            "id": "ds101",
            "title": "Data analysis with Python",
            "opens": day(-30),
            "closes": day(60),
            "learners": list(learners),
            "teachers": ["tina"],
            "notebooks": [
                *({"path": f"{name}.ipynb", "name": name} for name in notebooks),
                {"path": "know.ipynb", "name": "know"},
            ],
        },
        {
            "id": "stat200",
            "title": "Statistical inference",
            "opens": day(-10),
            "closes": day(90),
            "learners": ["carol"],
            "teachers": ["sam"],
        },
    ]
    path = directory / "courses.yaml"
    path.write_text(yaml.safe_dump({"courses": courses}, sort_keys=False))
    return path


def analytics_hub_config(
    catalog: Path, runtime_dir: Path, events_db: Path, port: int, **options
) -> str:
    """Extra hub config (appended to tests.hubtest's): the analytics service, as the lead wires it."""
    settings = {
        "GatewaySupervisor.pool_size": 2,
        "GatewaySupervisor.execution_timeout": 3.0,
        "GatewaySupervisor.queue_timeout": 2.0,
        "GatewaySupervisor.interrupt_grace": 2.0,
        "GatewaySupervisor.health_interval": 0.5,
        "GatewaySupervisor.health_failures": 2,
        "GatewaySupervisor.max_backoff": 2.0,
        "AnalyticsService.watermark_interval": 0.2,
        "AnalyticsService.hub_cache_max_age": 5,
        "CourseExtracts.min_interval": 0.5,
        "Application.log_level": "DEBUG",
        **options,
    }
    return f"""
from hub_ext.courses import Catalog
from hub_ext.services.analytics.hubconfig import configure_analytics
configure_analytics(
    c,
    Catalog.load({str(catalog)!r}),
    catalog_path={str(catalog)!r},
    admin_users={{"admin"}},
    port={port},
    runtime_dir={str(runtime_dir)!r},
    events_url={readonly_url(events_db)!r},
    options={settings!r},
)
"""
