"""The events service under a real JupyterHub (and its real proxy): xAPI through the hub's
URL, course servers' start/stop from the hub's own ``server-action`` events, and their
activity from the hub API, all landing in one store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from hub_ext.services.events.hubconfig import EVENTS_SCOPES, events_role, events_service
from hub_ext.services.events.models import Statement
from hub_ext.services.events.store import EventStore
from tests.conftest import standard_courses, write_catalog
from tests.hubtest import HubProcess, node_available

pytestmark = pytest.mark.asyncio(loop_scope="session")

LAUNCHED = "http://adlnet.gov/expapi/verbs/launched"
EXITED = "http://adlnet.gov/expapi/verbs/exited"
INTERACTED = "http://adlnet.gov/expapi/verbs/interacted"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def events_hub(tmp_path_factory):
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    work = tmp_path_factory.mktemp("events-hub")
    catalog = write_catalog(work / "catalog", standard_courses())
    db = f"sqlite:///{work / 'events.sqlite'}"
    from tests.events_fixtures import free_port

    extra = f"""
from hub_ext.services.events.hubconfig import events_role, events_service, server_action_handler
c.JupyterHub.services = c.JupyterHub.services + [
    events_service({db!r}, port={free_port()}, settings={{"EventsService.hub_poll_interval": 0.5}})
]
c.JupyterHub.load_roles = c.JupyterHub.load_roles + [events_role()]
c.EventLogger.handlers = [server_action_handler({db!r})]
"""
    hub = HubProcess(work / "hub", catalog, extra_config=extra)
    await hub.start()
    store = EventStore(db)
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    r = await client.get(f"{hub.url}/services/events/xAPI/about", timeout=2)
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the events service did not come up:\n{hub.log_tail()}")
                await asyncio.sleep(0.3)
        hub.events = store
        yield hub
    finally:
        await hub.shutdown()
        store.dispose()


def statements(store, **where) -> list:
    q = select(
        Statement.learner,
        Statement.course_id,
        Statement.verb,
        Statement.source,
        Statement.object_id,
    )
    for k, v in where.items():
        q = q.where(getattr(Statement, k) == v)
    with store.engine.connect() as conn:
        return conn.execute(q).all()


async def eventually(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.25)


async def test_role_is_the_least_it_needs():
    role = events_role()
    assert (
        role["scopes"]
        == list(EVENTS_SCOPES)
        == ["list:users", "read:users:activity", "read:servers"]
    )
    entry = events_service("sqlite:////tmp/x.db", port=12345)
    assert (
        entry["url"] == "http://127.0.0.1:12345"
        and entry["environment"]["HUB_EXT_EVENTS_DB"] == "sqlite:////tmp/x.db"
    )
    assert "api_token" not in entry  # the hub makes the token; it never sits in config


async def test_xapi_through_the_hub_url(events_hub):
    key, secret = events_hub.events.add_source("moodle-hubtest", course_id="ds101")
    statement = {
        "actor": {"account": {"homePage": "https://moodle.example.org", "name": "alice"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"id": "https://moodle.example.org/mod/page/view.php?id=1"},
    }
    async with httpx.AsyncClient(
        base_url=f"{events_hub.url}/services/events/xAPI", timeout=30
    ) as c:
        headers = {"X-Experience-API-Version": "1.0.3"}
        r = await c.post("/statements", json=statement, headers=headers, auth=(key, secret))
        assert r.status_code == 200, r.text
        (sid,) = r.json()
        got = await c.get(
            "/statements", params={"statementId": sid}, headers=headers, auth=(key, secret)
        )
        assert got.json()["object"]["id"] == statement["object"]["id"]
        # a hub token is not an xAPI credential
        r = await c.get(
            "/statements", headers={**headers, "Authorization": f"token {events_hub.admin_token}"}
        )
        assert r.status_code == 401
    assert ("alice", "ds101") in [
        (s.learner, s.course_id) for s in statements(events_hub.events, id=sid)
    ]
    assert secret not in (Path(events_hub.log_path).read_text(errors="replace"))


async def test_course_server_start_activity_and_stop_are_recorded(events_hub):
    store = events_hub.events
    token = await events_hub.user_token("bob")
    r = await events_hub.start_server("bob", "ds101", token=token)
    assert r.status_code in (201, 202), r.text
    launched = await eventually(lambda: statements(store, learner="bob", verb=LAUNCHED))
    assert launched[0].course_id == "ds101" and launched[0].source == "hub"
    assert launched[0].object_id == "urn:hub-ext:course-server:ds101"
    # the poller reads the server's last_activity from the hub API
    active = await eventually(lambda: statements(store, learner="bob", verb=INTERACTED))
    assert active[0].course_id == "ds101"
    r = await events_hub.api("DELETE", "/users/bob/servers/ds101", params={"remove": "false"})
    assert r.status_code in (202, 204), r.text
    exited = await eventually(lambda: statements(store, learner="bob", verb=EXITED))
    assert exited[0].course_id == "ds101"
    from hub_ext.services.events import queries

    profile = queries.learner_profile(store.engine, "ds101", "bob")
    assert profile["activity"]["last_on_hub"] is not None


async def test_a_courses_credentials_reach_only_that_course_through_the_hub(events_hub):
    """The attack as it was found: the ds101 LMS's credentials, through the hub's URL, read
    every course and the hub's activity, posted as stat200 and voided a hub record."""
    store = events_hub.events
    token = await events_hub.user_token("carol")
    r = await events_hub.start_server("carol", "stat200", token=token)
    assert r.status_code in (201, 202), r.text
    hub_ids = await eventually(
        lambda: [s.id for s in store_rows(store, source="hub", course_id="stat200")]
    )
    ds101 = events_hub.events.add_source("lms-ds101", course_id="ds101")
    stat200 = events_hub.events.add_source("lms-stat200", course_id="stat200")
    headers = {"X-Experience-API-Version": "1.0.3"}
    statement = {
        "actor": {"account": {"homePage": "https://moodle.example.org", "name": "carol"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"id": "https://moodle.example.org/mod/page/view.php?id=2"},
        "context": {"contextActivities": {"grouping": [{"id": "urn:hub-ext:course:stat200"}]}},
    }
    async with httpx.AsyncClient(
        base_url=f"{events_hub.url}/services/events/xAPI", headers=headers, timeout=30
    ) as c:

        async def until_known(auth):  # the service re-reads its sources every 2 s
            return await eventually_async(
                lambda: c.get("/statements", auth=auth), lambda r: r.status_code == 200
            )

        await until_known(stat200)
        r = await c.post("/statements", json=statement, auth=stat200)
        assert r.status_code == 200, r.text
        (theirs,) = r.json()
        seen = (await until_known(ds101)).json()["statements"]
        assert not {s["id"] for s in seen} & {theirs, *hub_ids}
        for sid in (theirs, hub_ids[0]):
            r = await c.get("/statements", params={"statementId": sid}, auth=ds101)
            assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
        r = await c.post("/statements", json=statement, auth=ds101)
        assert r.status_code == 403 and "stat200" in r.json()["message"], r.text
        void = {
            "actor": statement["actor"],
            "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
            "object": {"objectType": "StatementRef", "id": hub_ids[0]},
        }
        assert (await c.post("/statements", json=void, auth=ds101)).status_code == 200
    with store.engine.connect() as conn:
        voided = conn.execute(select(Statement.voided).where(Statement.id == hub_ids[0])).scalar()
    assert voided is False
    r = await events_hub.api("DELETE", "/users/carol/servers/stat200", params={"remove": "false"})
    assert r.status_code in (202, 204), r.text


def store_rows(store, **where) -> list:
    q = select(Statement.id)
    for k, v in where.items():
        q = q.where(getattr(Statement, k) == v)
    with store.engine.connect() as conn:
        return conn.execute(q).all()


async def eventually_async(call, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await call()
        if done(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.25)
