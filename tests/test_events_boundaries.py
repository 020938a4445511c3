"""The events service's trust boundaries, attacked over real HTTP.

Each test performs an attack that worked against a real hub (a course's LMS credentials
reading or writing another course's statements, or the hub's own activity records; a flood
of bad credentials stalling valid writers), then checks that it no longer works and that
nothing already stored was lost. The service runs in this process (a real tornado server on
a loopback port, its store a SQLite file: :func:`tests.events_fixtures.running_service`);
hub activity is written by the hub's own code path (:func:`hubevents.server_statement`
through ``insert_ignore``, as the hub's handler and poller do).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from hub_ext.services.events import store as store_module
from hub_ext.services.events.hubevents import server_statement
from hub_ext.services.events.models import Source, Statement
from hub_ext.services.events.store import EventStore, hash_secret
from tests.conftest import standard_courses, write_catalog
from tests.events_fixtures import running_service

V = {"X-Experience-API-Version": "1.0.3"}
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
HOME = "https://hub.example.edu"


def statement(course: str | None = None, learner: str = "ada") -> dict:
    s = {
        "actor": {"account": {"homePage": "https://moodle.example.org", "name": learner}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"id": f"https://moodle.example.org/mod/page/view.php?id={uuid.uuid4().hex}"},
    }
    if course:
        s["context"] = {"contextActivities": {"grouping": [{"id": f"urn:hub-ext:course:{course}"}]}}
    return s


def void(target: str) -> dict:
    return {
        "actor": {"account": {"homePage": "https://moodle.example.org", "name": "admin"}},
        "verb": {"id": VOIDED},
        "object": {"objectType": "StatementRef", "id": target},
    }


class Source_:
    """One source's credentials and an HTTP client that uses them."""

    def __init__(self, app, key: str, secret: str):
        self.key, self.secret = key, secret
        self.client = httpx.AsyncClient(
            base_url=app.url + "/services/events/xAPI",
            headers=V,
            auth=httpx.BasicAuth(key, secret),
            timeout=60,
        )

    async def post(self, body, **kw) -> httpx.Response:
        return await self.client.post("/statements", json=body, **kw)

    async def get(self, **params) -> httpx.Response:
        return await self.client.get("/statements", params=params)

    async def all_ids(self) -> set[str]:
        ids, url, params = set(), "/statements", {"limit": "500"}
        while url:
            r = await self.client.get(url, params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            ids |= {s["id"] for s in body["statements"]}
            url = body["more"].removeprefix("/services/events/xAPI") if body["more"] else ""
            params = None
        return ids


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(tmp_path_factory):
    """Two courses' LMS sources, a legacy source without a course, and hub activity."""
    async with running_service(
        tmp_path_factory.mktemp("boundaries"),
        activity_courses={"https://moodle.example.org/course/view.php?id=9": "stat200"},
    ) as app:
        ds101 = Source_(app, *app.store.add_source("lms-ds101", course_id="ds101"))
        stat200 = Source_(app, *app.store.add_source("lms-stat200", course_id="stat200"))
        # a source registered before sources had to name a course (a row as it was stored)
        legacy_key, legacy_secret = secrets.token_urlsafe(12), secrets.token_urlsafe(32)
        with app.store.engine.begin() as conn:
            conn.execute(
                Source.__table__.insert(),
                [{"name": "old-lms", "key": legacy_key, "secret_hash": hash_secret(legacy_secret),
                  "course_id": None, "created": datetime(2025, 1, 1)}],
            )  # fmt: skip
        legacy = Source_(app, legacy_key, legacy_secret)
        moment = datetime(2026, 9, 14, 10, 0, tzinfo=UTC)
        recorded = [("start", "alice", "ds101"), ("start", "alice", "stat200"),
                    ("activity", "carol", "stat200")]  # fmt: skip
        hub_rows = [server_statement(*what, moment, HOME) for what in recorded]
        app.store.insert_ignore(Statement.__table__, hub_rows)
        app.hub_ids = {":".join(what): r["id"] for what, r in zip(recorded, hub_rows, strict=True)}
        app.ds101, app.stat200, app.legacy = ds101, stat200, legacy
        r = await stat200.post([statement("stat200", "carol") for _ in range(3)])
        assert r.status_code == 200, r.text
        app.stat200_ids = r.json()
        r = await ds101.post([statement("ds101", "bob"), statement(None, "bob")])
        assert r.status_code == 200, r.text
        app.ds101_ids = r.json()
        try:
            yield app
        finally:
            for s in (ds101, stat200, legacy):
                await s.client.aclose()


def rows(store: EventStore, ids) -> dict[str, tuple]:
    t = Statement.__table__
    with store.engine.connect() as conn:
        got = conn.execute(
            select(t.c.id, t.c.course_id, t.c.source, t.c.voided).where(t.c.id.in_(list(ids)))
        ).all()
    return {r.id: (r.course_id, r.source, r.voided) for r in got}


# --------------------------------------------------------------------------- reading


async def test_a_source_reads_only_its_own_courses_statements_and_no_hub_activity(hub):
    seen = await hub.ds101.all_ids()
    assert set(hub.ds101_ids) <= seen
    assert not seen & set(hub.stat200_ids), "ds101's credentials read stat200's statements"
    assert not seen & set(hub.hub_ids.values()), "an LMS source read the hub's activity records"
    by_course = rows(hub.store, seen)
    assert {course for course, _, _ in by_course.values()} == {"ds101"}
    assert "hub" not in {source for _, source, _ in by_course.values()}
    # filters do not widen the scope: alice's hub account, her course server
    agent = json.dumps({"account": {"homePage": HOME, "name": "alice"}})
    r = await hub.ds101.get(agent=agent)
    assert r.status_code == 200 and r.json()["statements"] == []
    r = await hub.ds101.get(activity="urn:hub-ext:course-server:ds101")
    assert r.status_code == 200 and r.json()["statements"] == []
    # and stat200's source sees its own
    assert set(hub.stat200_ids) <= await hub.stat200.all_ids()


@pytest.mark.parametrize("which", ["stat200 statement", "hub ds101", "hub stat200"])
async def test_another_courses_statement_by_id_is_404_like_a_missing_one(hub, which):
    target = {
        "stat200 statement": hub.stat200_ids[0],
        "hub ds101": hub.hub_ids["start:alice:ds101"],
        "hub stat200": hub.hub_ids["start:alice:stat200"],
    }[which]
    missing = str(uuid.uuid4())
    r = await hub.ds101.get(statementId=target)
    m = await hub.ds101.get(statementId=missing)
    assert r.status_code == m.status_code == 404, r.text
    # no existence oracle: the same answer as for an id that was never stored
    assert r.json()["message"].replace(target, "ID") == m.json()["message"].replace(missing, "ID")
    assert (await hub.ds101.get(voidedStatementId=target)).status_code == 404
    assert (await hub.ds101.get(statementId=hub.ds101_ids[0])).status_code == 200


# --------------------------------------------------------------------------- writing


async def test_posting_a_statement_of_another_course_is_forbidden(hub):
    before = hub.store.count(Statement)
    r = await hub.ds101.post(statement("stat200"))
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error"] == "forbidden" and "stat200" in body["message"], body
    assert "ds101" in body["message"]
    # a batch with one such statement stores nothing of the batch
    batch = [statement("ds101"), statement(None), statement("stat200"), statement("ds101")]
    r = await hub.ds101.post(batch)
    assert r.status_code == 403 and r.json()["statement"] == 2, r.text
    assert "statements[2]" in r.json()["message"]
    # a course named through the LMS's own course page (activity_courses), and by PUT
    mapped = statement()
    mapped["context"] = {"contextActivities": {"parent": [
        {"id": "https://moodle.example.org/course/view.php?id=9"}]}}  # fmt: skip
    assert (await hub.ds101.post(mapped)).status_code == 403
    sid = str(uuid.uuid4())
    r = await hub.ds101.client.put(
        "/statements", params={"statementId": sid}, json=statement("stat200")
    )
    assert r.status_code == 403, r.text
    assert hub.store.count(Statement) == before
    assert rows(hub.store, [sid]) == {}
    # its own course, named or not, is fine
    r = await hub.ds101.post([statement("ds101"), statement(None)])
    assert r.status_code == 200, r.text
    assert {c for c, _, _ in rows(hub.store, r.json()).values()} == {"ds101"}


@pytest.mark.parametrize("which", ["stat200 statement", "hub stat200", "hub ds101"])
async def test_voiding_another_courses_or_the_hubs_statement_voids_nothing(hub, which):
    target = {
        "stat200 statement": hub.stat200_ids[1],
        "hub stat200": hub.hub_ids["activity:carol:stat200"],
        "hub ds101": hub.hub_ids["start:alice:ds101"],
    }[which]
    r = await hub.ds101.post(void(target))
    # xAPI: a voiding statement is not refused because its target is absent, and for this
    # source the target is absent (a different answer would tell it the id exists)
    assert r.status_code == 200, r.text
    assert rows(hub.store, [target])[target][2] is False, "a ds101 source voided " + which
    if which == "stat200 statement":
        assert (await hub.stat200.get(statementId=target)).status_code == 200


async def test_voiding_within_the_course_still_works(hub):
    sid = (await hub.ds101.post(statement("ds101"))).json()[0]
    assert (await hub.ds101.post(void(sid))).status_code == 200
    assert (await hub.ds101.get(statementId=sid)).status_code == 404
    assert (await hub.ds101.get(voidedStatementId=sid)).status_code == 200


# --------------------------------------------------------------------------- sources


async def test_a_source_without_a_course_is_refused_and_told_how_to_fix_it(hub):
    with hub.store.engine.begin() as conn:  # what it stored before stays
        conn.execute(
            Statement.__table__.insert(),
            [{**server_statement("stop", "dan", "ds101", datetime.now(UTC), HOME),
              "id": (old := str(uuid.uuid4())), "source": "old-lms"}],
        )  # fmt: skip
    for r in (await hub.legacy.get(), await hub.legacy.post(statement("ds101"))):
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert "old-lms" in message and "--course" in message and "add-source" in message
    assert rows(hub.store, [old])[old] == ("ds101", "old-lms", False)


def test_the_store_refuses_a_source_without_a_valid_course(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    store.create()
    with pytest.raises(TypeError):
        store.add_source("moodle")  # the course is required
    for course, reason in [(None, "course"), ("", "course"), ("DS 101", "not a course id")]:
        with pytest.raises(ValueError, match=reason):
            store.add_source("moodle", course)
    with pytest.raises(ValueError, match="reserved"):
        store.add_source("hub", "ds101")  # the hub's own records are source "hub"
    store.add_source("moodle", "ds101")
    store.dispose()


def test_add_source_requires_a_course_of_the_catalog(tmp_path, capsys, monkeypatch):
    from hub_ext.cli import build_parser, main

    monkeypatch.delenv("HUB_EXT_CATALOG", raising=False)
    db = f"sqlite:///{tmp_path / 'events.sqlite'}"
    catalog = write_catalog(tmp_path / "catalog", standard_courses())

    def cli(*args) -> tuple[int, str, str]:
        status = main(["events", *args, "--db", db])
        out = capsys.readouterr()
        return status, out.out, out.err

    status, _, err = cli("add-source", "moodle")
    assert status == 2 and "--course ID is required" in err and "one course" in err
    events = build_parser("events")._subparsers._group_actions[0].choices["events"]
    add = events._subparsers._group_actions[0].choices["add-source"]
    assert "required" in add.format_help() and "--catalog" in add.format_help()
    status, _, err = cli("add-source", "moodle", "--course", "DS 101")
    assert status == 1 and "not a course id" in err
    status, _, err = cli("add-source", "moodle", "--course", "nope101", "--catalog", str(catalog))
    assert status == 1 and "nope101" in err and "ds101" in err  # names the catalog's courses
    monkeypatch.setenv("HUB_EXT_CATALOG", str(catalog))
    status, _, err = cli("add-source", "moodle", "--course", "nope101")
    assert status == 1 and "nope101" in err
    status, out, _ = cli("add-source", "moodle", "--course", "stat200")
    assert status == 0 and "secret:" in out
    store = EventStore(db)
    assert [(s["name"], s["course_id"]) for s in store.sources()] == [("moodle", "stat200")]
    with store.engine.begin() as conn:  # a source made before --course was required
        conn.execute(Source.__table__.insert(), [{"name": "old-lms", "key": "k", "secret_hash": "x",
                                                  "created": datetime(2025, 1, 1)}])  # fmt: skip
    status, out, err = cli("sources")
    assert status == 0 and "old-lms" in out and "has no course" in err and "--course" in err
    store.dispose()


async def test_a_source_added_or_removed_takes_effect_within_the_refresh(hub, monkeypatch):
    """Sources are re-read every ``sources_refresh_seconds``; the clock is moved, not waited."""
    real, offset = hub.clock, [0.0]
    monkeypatch.setattr(hub, "clock", lambda: real() + offset[0])
    other = EventStore(hub.store.url)  # as `hub-ext events add-source / remove-source` do
    key, secret = other.add_source("short-lived", course_id="ds101")
    lms = Source_(hub, key, secret)
    try:
        offset[0] += hub.sources_refresh_seconds + 1
        assert (await lms.get(limit="1")).status_code == 200  # verified, and remembered
        assert other.remove_source("short-lived")
        offset[0] += hub.sources_refresh_seconds + 1
        r = await lms.get(limit="1")
        assert r.status_code == 401, r.text  # not 300 s later: the remembered check is gone
        assert key not in hub._verified
    finally:
        other.dispose()
        await lms.client.aclose()


# --------------------------------------------------------------------------- flood


async def test_a_flood_of_bad_credentials_does_not_stall_valid_writers(hub, monkeypatch):
    """200 requests with wrong Basic credentials (half an unknown key, half the ds101 key
    with a wrong secret) while the ds101 LMS posts: every valid POST succeeds; the flood
    costs no hash for an unknown key and none on the store's threads."""
    hashes: list[str] = []
    real_scrypt = store_module.hashlib.scrypt

    def counting_scrypt(*a, **kw):
        hashes.append(threading.current_thread().name)
        return real_scrypt(*a, **kw)

    assert (await hub.ds101.get(limit="1")).status_code == 200  # a writer already verified
    monkeypatch.setattr(store_module.hashlib, "scrypt", counting_scrypt)
    base = hub.url + "/services/events/xAPI/statements"
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
    async with httpx.AsyncClient(headers=V, timeout=120, limits=limits) as attacker:

        async def bad(i: int) -> tuple[bool, httpx.Response]:
            known = i % 2 == 1
            key = hub.ds101.key if known else secrets.token_urlsafe(12)
            auth = httpx.BasicAuth(key, secrets.token_urlsafe(32))
            return known, await attacker.post(base, json=statement("ds101"), auth=auth)

        async def writer() -> list[httpx.Response]:
            out = []
            for _ in range(10):
                out.append(await hub.ds101.post([statement("ds101") for _ in range(5)]))
                await asyncio.sleep(0)
            return out

        flood = [asyncio.ensure_future(bad(i)) for i in range(200)]
        valid = await writer()
        answered = await asyncio.gather(*flood)
    assert [r.status_code for r in valid] == [200] * 10, [r.text for r in valid]
    assert len(rows(hub.store, [i for r in valid for i in r.json()])) == 50
    statuses = {r.status_code for _, r in answered}
    assert statuses <= {401, 503}, statuses
    for _, r in answered:
        if r.status_code == 503:
            assert r.json()["error"] == "busy" and r.headers["Retry-After"]
        else:
            assert r.headers["WWW-Authenticate"].startswith("Basic")
    checked = sum(1 for known, r in answered if known and r.status_code == 401)
    busy = sum(1 for _, r in answered if r.status_code == 503)
    print(f"flood: {checked} secrets checked, {busy} answered 503, {len(hashes)} hashes")
    # an unknown key costs no hash; a wrong secret at most one, never on the store's threads
    assert len(hashes) <= checked, (len(hashes), checked)
    assert all(name.startswith("hub-ext-events-auth") for name in hashes), set(hashes)


# --------------------------------------------------------------------------- errors, logs


async def test_errors_are_error_message_request_id_and_logs_hold_no_query_nor_secret(hub):
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage() + " " + str(record.args))

    keep = Keep()
    loggers = [hub.log, logging.getLogger("tornado.access"), logging.getLogger("tornado.general"),
               logging.getLogger("tornado.application")]  # fmt: skip
    for logger in loggers:
        logger.addHandler(keep)
    try:
        marker = "mailto:secret-learner@example.org"
        r = await hub.ds101.client.put(
            "/statements",
            params={"statementId": str(uuid.uuid4()), "agent": marker},
            content=b"{not json",
        )
        assert r.status_code == 400
        body = r.json()
        assert set(body) >= {"error", "message", "request_id"} and "status" not in body
        assert body["error"] == "bad_request" and "not JSON" in body["message"]
        assert r.headers["X-Request-Id"] == body["request_id"]
        r2 = await hub.ds101.get(agent=json.dumps({"mbox": marker}))
        assert r2.status_code == 200 and r2.headers["X-Request-Id"] != body["request_id"]
        r3 = await hub.ds101.client.get(
            "/statements", auth=httpx.BasicAuth(hub.ds101.key, "wrong-" + hub.ds101.secret)
        )
        assert r3.status_code == 401 and r3.json()["error"] == "unauthorized"
        r4 = await hub.ds101.client.get(hub.url + "/services/events/nothing?x=" + marker)
        assert r4.status_code == 404 and r4.json()["error"] == "not_found"
    finally:
        for logger in loggers:
            logger.removeHandler(keep)
    text = "\n".join(records)
    assert records and body["request_id"] in text  # the log line can be found by its id
    assert "secret-learner" not in text and "statementId" not in text and "?" not in text
    assert hub.ds101.secret not in text and "Authorization" not in text
