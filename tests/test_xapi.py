"""The xAPI 1.0.3 Statements resource of the events service, over real HTTP.

The service runs in this process (a real tornado server on a loopback port, its store a
SQLite file: :func:`tests.events_fixtures.running_service`); requests go through httpx as an
LMS's would. The trust boundaries (courses, the hub's records, floods) are in
``test_events_boundaries.py``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import uuid
from collections import Counter

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from hub_ext.services.events.models import Statement
from hub_ext.services.events.xapi import CLICKS_EXTENSION, StatementError, validate_statement
from tests.events_fixtures import poll_since, postgres_url, running_service  # noqa: F401

V = {"X-Experience-API-Version": "1.0.3"}
ACTIVITY = {
    "actor": {"objectType": "Agent", "name": "Ada", "mbox": "mailto:ada@example.org"},
    "verb": {
        "id": "http://adlnet.gov/expapi/verbs/experienced",
        "display": {"en-US": "experienced"},
    },
    "object": {
        "objectType": "Activity",
        "id": "https://moodle.example.org/mod/page/view.php?id=12",
        "definition": {
            "name": {"en": "Week 1"},
            "type": "http://adlnet.gov/expapi/activities/lesson",
        },
    },
    "result": {
        "score": {"raw": 7, "min": 0, "max": 10, "scaled": 0.7},
        "completion": True,
        "duration": "PT4M30S",
    },
    "context": {
        "contextActivities": {"grouping": [{"id": "urn:hub-ext:course:ds101"}]},
        "platform": "Moodle",
        "language": "en-GB",
    },
    "timestamp": "2026-09-14T10:15:00.123+02:00",
}
AGENT = {
    "objectType": "Agent",
    "account": {"homePage": "https://moodle.example.org", "name": "bob"},
}


def objects() -> dict[str, dict]:
    """One valid statement per object type."""
    ref_target = str(uuid.uuid4())
    made = {
        "Activity": copy.deepcopy(ACTIVITY),
        "Agent": {**copy.deepcopy(ACTIVITY), "object": AGENT},
        "Group": {
            **copy.deepcopy(ACTIVITY),
            "object": {
                "objectType": "Group",
                "name": "team A",
                "member": [AGENT, {"mbox": "mailto:c@example.org"}],
            },
        },
        "StatementRef": {
            **copy.deepcopy(ACTIVITY),
            "object": {"objectType": "StatementRef", "id": ref_target},
        },
        "SubStatement": {
            **copy.deepcopy(ACTIVITY),
            "verb": {"id": "http://adlnet.gov/expapi/verbs/planned"},
            "object": {
                "objectType": "SubStatement",
                "actor": AGENT,
                "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
                "object": {"id": "https://moodle.example.org/mod/quiz/view.php?id=3"},
            },
        },
    }
    for kind, statement in made.items():
        if kind != "Activity":  # context.platform is only allowed with an Activity object
            del statement["context"]["platform"]
    return made


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lrs(tmp_path_factory):
    async with running_service(tmp_path_factory.mktemp("lrs"), page_size=50) as app:
        key, secret = app.store.add_source("moodle", course_id="ds101")
        auth = httpx.BasicAuth(key, secret)
        async with httpx.AsyncClient(
            base_url=app.url + "/services/events/xAPI", headers=V, auth=auth, timeout=30
        ) as client:
            client.app, client.secret = app, secret
            yield client


def count(app) -> int:
    return app.store.count(Statement)


def assert_error(r: httpx.Response, status: int, error: str, request_id: str = "") -> dict:
    """``r`` is the hub_ext services' one JSON error ``{error, message, request_id}``: the
    status, its machine word, a sentence, the request id of the ``X-Request-Id`` header (the
    caller's own when given), and the xAPI version header as on every answer."""
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body.keys() >= {"error", "message", "request_id"}, body
    assert body["error"] == error and re.fullmatch(r"[a-z_]+", error), body
    assert isinstance(body["message"], str) and len(body["message"]) > 10, body
    assert body["request_id"] == r.headers["X-Request-Id"], (body, r.headers)
    assert body["request_id"] == (request_id or body["request_id"]), body
    assert r.headers["X-Experience-API-Version"] == "1.0.3"
    return body


# --------------------------------------------------------------------------- protocol


async def test_about_needs_no_credentials_and_lists_the_resources_that_exist(lrs):
    r = await lrs.get("/about", headers={}, auth=None)
    assert r.status_code == 200 and r.json()["version"] == ["1.0.3"]
    assert r.headers["X-Experience-API-Version"] == "1.0.3"
    listed = r.json()["extensions"]["urn:hub-ext:xapi:resources"]
    assert set(listed) == {"statements", "activities/state", "activities/profile",
                           "agents/profile", "activities", "agents", "about"}  # fmt: skip
    for resource in listed:  # each answers (a 400 for the parameters it lacks), none 404
        assert (await lrs.get(f"/{resource}")).status_code in (200, 400), resource


@pytest.mark.parametrize(
    "version,status", [(None, 400), ("0.95", 400), ("2.0.0", 400), ("1.0.1", 200)]
)
async def test_version_header(lrs, version, status):
    headers = {"X-Experience-API-Version": version} if version else {}
    r = await lrs.get("/statements", headers=headers)
    if version is None:  # httpx merges headers: drop the default one explicitly
        r = await lrs.request("GET", "/statements", headers={"X-Experience-API-Version": ""})
    assert r.status_code == status, r.text
    if status == 400:
        assert "X-Experience-API-Version" in assert_error(r, 400, "bad_request")["message"]


async def test_credentials_are_required_and_checked(lrs):
    r = await lrs.post("/statements", json=ACTIVITY, auth=None)
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.BasicAuth(lrs.app.store.sources()[0]["key"], "not-the-secret")
    assert (await lrs.post("/statements", json=ACTIVITY, auth=wrong)).status_code == 401
    # the secret is kept hashed only
    from sqlalchemy import select

    from hub_ext.services.events.models import Source

    with lrs.app.store.engine.connect() as conn:
        stored = conn.execute(select(Source.secret_hash)).scalar()
    assert lrs.secret not in stored and stored.startswith("scrypt$")


# --------------------------------------------------------------------------- POST / PUT / GET


@pytest.mark.parametrize("kind", ["Activity", "Agent", "Group", "StatementRef", "SubStatement"])
async def test_every_object_type_is_accepted_and_read_back(lrs, kind):
    statement = objects()[kind]
    r = await lrs.post("/statements", json=statement)
    assert r.status_code == 200, r.text
    (sid,) = r.json()
    got = (await lrs.get("/statements", params={"statementId": sid})).json()
    assert got["id"] == sid and got["object"] == statement["object"]
    # sent without a version: the data model's, 1.0.0 (Data 2.4.10), not the API's 1.0.3
    assert got["version"] == "1.0.0" and "stored" in got
    assert got["authority"]["name"] == "moodle"


async def test_statements_map_to_course_and_learner(lrs):
    body = copy.deepcopy(ACTIVITY)
    sid = (await lrs.post("/statements", json=body)).json()[0]
    plain = copy.deepcopy(ACTIVITY)
    del plain["context"]
    sid2 = (await lrs.post("/statements", json=plain)).json()[0]
    from sqlalchemy import select

    with lrs.app.store.engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(Statement.id, Statement.course_id).where(Statement.id.in_([sid, sid2]))
            ).all()
        )
        learner = conn.execute(select(Statement.learner).where(Statement.id == sid)).scalar()
    assert rows == {sid: "ds101", sid2: "ds101"}  # named in context / the source's course
    assert learner == "ada@example.org"


BAD = {
    "missing actor": (lambda s: s.pop("actor"), "missing required property 'actor'"),
    "bad verb IRI": (lambda s: s["verb"].update(id="experienced"), "verb.id"),
    "bad timestamp": (lambda s: s.update(timestamp="14/09/2026 10:15"), "timestamp"),
    "unknown top-level property": (lambda s: s.update(foo=1), "unknown property 'foo'"),
    "two identifiers": (
        lambda s: s["actor"].update(openid="https://ada.example.org"),
        "exactly one identifier",
    ),
    "score out of range": (lambda s: s["result"]["score"].update(raw=11), "above max"),
    "bad duration": (lambda s: s["result"].update(duration="4 minutes"), "duration"),
    "bad language map": (lambda s: s["verb"].update(display={"not a tag!": "x"}), "language tag"),
    "negative zero offset": (lambda s: s.update(timestamp="2026-09-14T10:15:00-00:00"), "-00:00"),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_malformed_statements_get_400_with_the_reason(lrs, case):
    statement = copy.deepcopy(ACTIVITY)
    mutate, reason = BAD[case]
    mutate(statement)
    before = count(lrs.app)
    r = await lrs.post("/statements", json=statement)
    assert r.status_code == 400, r.text
    assert reason in r.json()["message"]
    assert count(lrs.app) == before


async def test_a_rejected_batch_stores_nothing(lrs):
    good = [copy.deepcopy(ACTIVITY) for _ in range(5)]
    broken = copy.deepcopy(ACTIVITY)
    broken["verb"]["id"] = "not an iri"
    before = count(lrs.app)
    r = await lrs.post("/statements", json=[*good, broken])
    body = assert_error(r, 400, "bad_request")
    assert body["statement"] == 5 and body["field"] == "statements[5].verb.id"
    assert "statements[5].verb.id" in body["message"]
    assert count(lrs.app) == before
    sid = str(uuid.uuid4())
    twice = [{**copy.deepcopy(ACTIVITY), "id": sid}, {**copy.deepcopy(ACTIVITY), "id": sid}]
    assert (await lrs.post("/statements", json=twice)).status_code == 400
    assert count(lrs.app) == before


async def test_put_and_conflicts(lrs):
    sid = str(uuid.uuid4())
    r = await lrs.put("/statements", params={"statementId": sid}, json=ACTIVITY)
    assert r.status_code == 204, r.text
    # the same statement again is no change
    assert (
        await lrs.put("/statements", params={"statementId": sid}, json=ACTIVITY)
    ).status_code == 204
    other = copy.deepcopy(ACTIVITY)
    other["verb"]["id"] = "http://adlnet.gov/expapi/verbs/attempted"
    before = count(lrs.app)
    r = await lrs.put("/statements", params={"statementId": sid}, json=other)
    assert assert_error(r, 409, "conflict")["statement_id"] == sid
    # a batch with a conflicting id stores nothing of the batch
    r = await lrs.post("/statements", json=[copy.deepcopy(ACTIVITY), {**other, "id": sid}])
    assert r.status_code == 409
    assert count(lrs.app) == before
    assert (await lrs.put("/statements", json=ACTIVITY)).status_code == 400  # no statementId
    mismatch = {**copy.deepcopy(ACTIVITY), "id": str(uuid.uuid4())}
    assert (
        await lrs.put("/statements", params={"statementId": sid}, json=mismatch)
    ).status_code == 400


async def test_voiding(lrs):
    sid = (await lrs.post("/statements", json=copy.deepcopy(ACTIVITY))).json()[0]
    void = {
        "actor": ACTIVITY["actor"],
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
        "object": {"objectType": "StatementRef", "id": sid},
    }
    assert (await lrs.post("/statements", json=void)).status_code == 200
    assert (await lrs.get("/statements", params={"statementId": sid})).status_code == 404
    got = await lrs.get("/statements", params={"voidedStatementId": sid})
    assert got.status_code == 200 and got.json()["id"] == sid
    bad_void = {**void, "object": {"id": "https://example.org/x"}}
    assert (await lrs.post("/statements", json=bad_void)).status_code == 400


async def test_get_filters_and_more_paging(lrs):
    verb = f"http://example.org/verbs/paged-{uuid.uuid4().hex[:8]}"
    batch = []
    for i in range(120):
        s = copy.deepcopy(ACTIVITY)
        s["verb"] = {"id": verb}
        s["object"] = {"id": f"https://example.org/page/{i % 3}"}
        s["actor"] = {"mbox": f"mailto:p{i % 4}@example.org"}
        batch.append(s)
    ids = (await lrs.post("/statements", json=batch)).json()
    assert len(ids) == 120
    seen, url, pages = [], "/statements", 0
    params = {"verb": verb, "ascending": "true"}
    while url:
        r = await lrs.get(url, params=params)
        assert r.status_code == 200, r.text
        assert "X-Experience-API-Consistent-Through" in r.headers
        body = r.json()
        seen += [s["id"] for s in body["statements"]]
        pages += 1
        url, params = (
            body["more"].removeprefix("/services/events/xAPI") if body["more"] else "",
            None,
        )
    assert seen == ids and pages == 3  # page size 50, oldest first
    newest = (await lrs.get("/statements", params={"verb": verb, "limit": "5"})).json()
    assert [s["id"] for s in newest["statements"]] == ids[::-1][:5]
    agent = '{"mbox": "mailto:p1@example.org"}'
    r = await lrs.get(
        "/statements",
        params={"verb": verb, "agent": agent, "activity": "https://example.org/page/1"},
    )
    expected = [sid for i, sid in enumerate(ids) if i % 4 == 1 and i % 3 == 1]
    assert sorted(s["id"] for s in r.json()["statements"]) == sorted(expected)
    stored = (await lrs.get("/statements", params={"statementId": ids[0]})).json()["stored"]
    r = await lrs.get("/statements", params={"verb": verb, "since": stored})
    assert r.json()["statements"] == []  # one request stored them all at the same moment
    r = await lrs.get("/statements", params={"verb": verb, "until": stored, "limit": "1"})
    assert len(r.json()["statements"]) == 1


@pytest.mark.parametrize(
    "params",
    [{"limit": "-1"}, {"since": "yesterday"}, {"agent": "{not json"}, {"ascending": "maybe"}, {"colour": "red"},
     {"statementId": str(uuid.uuid4()), "verb": "http://x.org/v"}, {"more": "garbage"}],
)  # fmt: skip
async def test_bad_get_parameters_get_400(lrs, params):
    r = await lrs.get("/statements", params=params)
    assert r.status_code == 400, r.text


def test_validator_names_the_field():
    s = copy.deepcopy(ACTIVITY)
    s["context"]["contextActivities"]["grouping"][0]["id"] = "no scheme"
    with pytest.raises(StatementError) as e:
        validate_statement(s)
    assert e.value.path == "statement.context.contextActivities.grouping[0].id"
    s = objects()["SubStatement"]
    s["object"]["object"] = {
        "objectType": "SubStatement",
        "actor": AGENT,
        "verb": {"id": "http://x.org/v"},
        "object": {"id": "http://x.org/a"},
    }
    with pytest.raises(StatementError, match="cannot contain another SubStatement"):
        validate_statement(s)
    s = copy.deepcopy(ACTIVITY)
    s["object"] = AGENT
    with pytest.raises(StatementError, match="only allowed when the object is an Activity"):
        validate_statement(s)  # context.platform with an Agent object


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!notbase64",
        "Bearer abc",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Basic " + base64.b64encode(b":").decode(),
    ],
)
async def test_garbage_credentials_get_401(lrs, header):
    r = await lrs.get("/statements", headers={"Authorization": header}, auth=None)
    assert r.status_code == 401


# --------------------------------------------------------------------------- errors


def token(state) -> str:
    """A ``more`` token made by hand (the LRS's own are base64 of JSON, as this one)."""
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def statement_with(change) -> dict:
    s = copy.deepcopy(ACTIVITY)
    change(s)
    return s


async def test_every_error_has_one_shape_and_keeps_the_callers_request_id(lrs, monkeypatch):
    """Each kind of refusal, over HTTP: ``{error, message, request_id}`` with the machine
    word of its status, the caller's ``X-Request-Id`` in the header and the body, the xAPI
    version header; nothing of a refused request is stored."""
    sid = str(uuid.uuid4())
    r = await lrs.put("/statements", params={"statementId": sid}, json=ACTIVITY)
    assert r.status_code == 204, r.text
    attempted = statement_with(lambda s: s["verb"].update(id="http://x.org/verbs/attempted"))
    stat200 = statement_with(
        lambda s: s["context"]["contextActivities"].update(
            grouping=[{"id": "urn:hub-ext:course:stat200"}]
        )
    )
    monkeypatch.setattr(lrs.app, "max_body_size", 4096)  # read at each request
    cases = [  # (what, request, status, error, in the message, more of the body)
        ("bad JSON", {"method": "POST", "content": b"{not json"}, 400, "bad_request", "not JSON", {}),
        ("bad statement", {"method": "POST", "json": statement_with(lambda s: s.pop("verb"))},
         400, "bad_request", "'verb'", {"field": "statement"}),
        ("no version", {"method": "GET", "headers": {"X-Experience-API-Version": ""}},
         400, "bad_request", "X-Experience-API-Version", {}),
        ("unknown source", {"method": "GET", "auth": httpx.BasicAuth("no-such-key", "secret")},
         401, "unauthorized", "credentials", {}),
        ("wrong course", {"method": "POST", "json": stat200}, 403, "forbidden", "stat200",
         {"course": "stat200"}),
        ("not found", {"method": "GET", "params": {"statementId": str(uuid.uuid4())}},
         404, "not_found", "no statement", {}),
        ("no such resource", {"method": "GET", "url": "/activities/stat"}, 404, "not_found",
         "no resource", {}),
        ("method", {"method": "DELETE"}, 405, "method_not_allowed", "", {}),
        ("conflict", {"method": "PUT", "params": {"statementId": sid}, "json": attempted},
         409, "conflict", sid, {"statement_id": sid}),
        ("too large", {"method": "POST", "content": b" " * 5000}, 413, "payload_too_large",
         "4096 bytes", {}),
        ("malformed paging token", {"method": "GET", "params": {"more": token({"f": [], "a": 1})}},
         400, "bad_request", "more", {}),
    ]  # fmt: skip
    before = count(lrs.app)
    for i, (what, request, status, error, says, more) in enumerate(cases):
        request = {"url": "/statements", **request}
        headers = {
            **request.pop("headers", {}),
            "X-Request-Id": f"lms-{i}.{what.replace(' ', '_')}",
        }
        r = await lrs.request(**request, headers=headers)
        body = assert_error(r, status, error, request_id=headers["X-Request-Id"])
        assert says in body["message"], (what, body)
        assert body.items() >= more.items(), (what, body)
        assert "statement" not in body, (what, body)  # only a batch's statement is numbered
        if status == 401:
            assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert count(lrs.app) == before
    # an id that is not one (spaces, too long) is replaced; header and body still agree
    for given in ("not an id", "x" * 65):
        r = await lrs.get("/statements", params={"more": "%%%"}, headers={"X-Request-Id": given})
        assert re.fullmatch(r"[0-9a-f]{16}", assert_error(r, 400, "bad_request")["request_id"])


@contextlib.asynccontextmanager
async def fresh_lrs(kind: str, request, tmp_path_factory, name: str):
    """A service of its own on ``kind`` (sqlite, or a new database ``name`` in the session's
    PostgreSQL server), with one source of ds101: an httpx client on its xAPI root."""
    traits = {}
    if kind == "postgresql":
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        server = request.getfixturevalue("postgres_url")
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        traits["db_url"] = make_url(server).set(database=name).render_as_string(hide_password=False)
    async with running_service(tmp_path_factory.mktemp(name), **traits) as app:
        key, secret = app.store.add_source("moodle", course_id="ds101")
        async with httpx.AsyncClient(
            base_url=app.url + "/services/events/xAPI",
            headers=V,
            auth=httpx.BasicAuth(key, secret),
            timeout=60,
        ) as client:
            client.app = app
            yield client


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgresql"])
async def any_lrs(request, tmp_path_factory):
    """The LRS on each store it runs on (PostgreSQL refuses values that SQLite takes: NUL,
    strings longer than their column, 32-bit integers): the SQLite one of :func:`lrs`, or one
    on a database of its own in the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield request.getfixturevalue("lrs")
        return
    async with fresh_lrs("postgresql", request, tmp_path_factory, "xapi_errors") as client:
        yield client


def raw(statement: dict, old: str, new: str) -> bytes:
    """``statement`` as JSON text with ``old`` replaced by ``new`` (what json.dumps would not write)."""
    text = json.dumps(statement)
    assert old in text
    return text.replace(old, new).encode()


HOSTILE = {  # what: (method, request, status, in the message)
    "JSON nested too deeply": ("POST", {"content": b"[" * 100_000}, 400, "nested too deeply"),
    "NaN": ("POST", {"content": raw(ACTIVITY, '"raw": 7', '"raw": NaN')}, 400, "NaN"),
    "a number beyond floats": ("POST", {"content": raw(ACTIVITY, '"raw": 7', '"raw": 1e999')},
                               400, "result.score.raw"),
    "a whole number beyond floats": ("POST", {"content": raw(ACTIVITY, '"max": 10', '"max": 1' + "0" * 400)},
                                     400, "result.score.max"),
    "NUL in an IRI": ("POST", {"json": statement_with(lambda s: s["verb"].update(id="http://x.org/\x00"))},
                      400, "statement.verb.id: holds a NUL"),
    "NUL in an account name": ("POST", {"json": {**ACTIVITY, "actor": {"account": {
        "homePage": "https://moodle.example.org", "name": "ada\x00"}}}}, 400, "actor.account.name"),
    "lone surrogate": ("POST", {"content": raw(ACTIVITY, '"Moodle"', '"Moo\\ud800dle"')},
                       400, "context.platform: holds a NUL character or a lone surrogate"),
    "IRI longer than its column": ("POST", {"json": statement_with(
        lambda s: s["verb"].update(id="http://x.org/" + "v" * 600))}, 400, "at most 512"),
    "learner longer than its column": ("POST", {"json": {**ACTIVITY, "actor": {"account": {
        "homePage": "https://moodle.example.org", "name": "n" * 300}}}}, 400, "at most 255"),
    "clicks beyond INTEGER": ("POST", {"json": statement_with(
        lambda s: s["result"].update(extensions={CLICKS_EXTENSION: 2**40}))}, 400, "out of range"),
    "timestamp beyond the years": ("POST", {"json": statement_with(
        lambda s: s.update(timestamp="9999-12-31T23:59:59-14:00"))}, 400, "out of range"),
    "a batch with one of them": ("POST", {"json": [ACTIVITY, statement_with(
        lambda s: s["object"].update(id="http://x.org/" + "o" * 600))]}, 400, "statements[1].object"),
    "credentials not ASCII": ("GET", {"headers": {"Authorization": b"Basic \xfc\xfc"}, "auth": None},
                              401, "credentials"),
    "limit in other digits": ("GET", {"params": {"limit": "\u00b2"}}, 400, "limit"),
    "since beyond the years": ("GET", {"params": {"since": "0001-01-01T00:00:00+14:00"}},
                               400, "out of range"),
    "agent nested too deeply": ("GET", {"params": {"agent": "[" * 5000}}, 400, "agent"),
    "agent with NUL": ("GET", {"params": {"agent": '{"mbox": "mailto:a@b.org", "name": "\\u0000"}'}},
                       400, "agent.name"),
    "token: not base64 JSON": ("GET", {"params": {"more": "%%%"}}, 400, "more"),
    "token: filters not an object": ("GET", {"params": {"more": token({"f": "x", "a": 1})}}, 400, "more"),
    "token: a filter not a string": ("GET", {"params": {"more": token({"f": {"agent": 5}, "a": 1})}},
                                     400, "more"),
    "token: NUL in a filter": ("GET", {"params": {"more": token({"f": {"verb": "v\x00"}, "a": 1})}},
                               400, "more"),
    "token: a position beyond BIGINT": ("GET", {"params": {"more": token({"f": {}, "a": 2**70})}},
                                        400, "more"),
    "token: a position not whole": ("GET", {"params": {"more": token({"f": {}, "a": 1e300})}},
                                    400, "more"),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(HOSTILE))
async def test_no_input_gives_a_500(any_lrs, what):
    """What an LMS (or anyone with its credentials) may send that once answered 500 on one
    store or the other: each is refused with the reason, and nothing is stored."""
    method, request, status, says = HOSTILE[what]
    before = count(any_lrs.app)
    r = await any_lrs.request(method, "/statements", **request)
    body = assert_error(r, status, "bad_request" if status == 400 else "unauthorized")
    assert says in body["message"], body
    assert count(any_lrs.app) == before


# --------------------------------------------------------------------------- issue #13


def _statement(verb: str, i: int, *, with_id: bool = True) -> dict:
    s = copy.deepcopy(ACTIVITY)
    s["verb"] = {"id": verb}
    s["object"] = {"id": f"https://example.org/sync/{i % 7}"}
    del s["timestamp"]  # the LRS gives it: the case of defect 2 too
    if with_id:
        s["id"] = str(uuid.uuid4())
    return s


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_consistent_through_is_a_promise(kind, request, tmp_path_factory):
    """Issue #13, defect 1 (the sync acceptance test): two writers post batches of 100 while
    a reader polls ``since=<the last X-Experience-API-Consistent-Through>`` (ascending,
    following ``more``) for 12 s; then one last poll. The reader ends with every statement
    exactly once: none missed (the header was once taken after the query, and ``stored``
    before validation and the write lock), none twice (a reading of the specification: an
    answer holds the statements stored up to its own Consistent-Through, so that the next
    poll's ``since`` starts where this one ended)."""
    import asyncio
    import time

    verb = f"http://example.org/verbs/sync-{uuid.uuid4().hex[:8]}"
    async with fresh_lrs(kind, request, tmp_path_factory, f"xapi_sync_{kind}") as lrs:
        posted: list[str] = []
        deadline = time.monotonic() + 12

        async def writer(n: int):
            i = 0
            while time.monotonic() < deadline:
                batch = [_statement(verb, i + j) for j in range(100)]
                i += 100
                r = await lrs.post("/statements", json=batch)
                assert r.status_code == 200, r.text
                posted.extend(r.json())

        got: list[str] = []
        since: str | None = None

        async def poll():
            nonlocal since
            since = await poll_since(lrs, since, got, verb=verb)

        async def reader():
            while time.monotonic() < deadline:
                await poll()
                await asyncio.sleep(0.05)

        await asyncio.gather(writer(1), writer(2), reader())
        await poll()
        assert len(posted) >= 1000, "the writers posted too little to test anything"
        missed = set(posted) - set(got)
        twice = [sid for sid, n in Counter(got).items() if n > 1]
        assert not missed and not twice, (
            f"{len(missed)} of {len(posted)} missed, {len(twice)} read twice"
        )
        assert len(got) == len(posted)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_retried_batch_succeeds_and_stores_nothing_new(kind, request, tmp_path_factory):
    """Issue #13, defect 2 (the retry acceptance test): every statement of a batch posted
    twice, with and without ids and timestamps, by POST and by PUT: 200/204, and the rows of
    the statements are those of the first time (the timestamp the LRS gave a statement that
    had none is kept, not compared with the retry's absent one).

    A reading: a statement without an id is a new statement each time it is posted (the
    client gave the LRS nothing to know it by, and two equal statements may both be true),
    so its retry gets 200 and new ids; the rows of the statements with ids stay as they were.
    """
    verb = f"http://example.org/verbs/retry-{uuid.uuid4().hex[:8]}"
    async with fresh_lrs(kind, request, tmp_path_factory, f"xapi_retry_{kind}") as lrs:
        batch = []
        for i, (with_id, with_ts) in enumerate(
            [(True, True), (True, False), (False, True), (False, False)] * 3
        ):
            s = _statement(verb, i, with_id=with_id)
            if with_ts:
                s["timestamp"] = "2026-09-14T10:15:00.123+02:00"
            batch.append(s)

        def rows() -> dict:
            with lrs.app.store.engine.connect() as conn:
                got = conn.execute(
                    select(Statement.id, Statement.raw, Statement.timestamp, Statement.stored)
                )
                return {r.id: tuple(r)[1:] for r in got}

        first = await lrs.post("/statements", json=copy.deepcopy(batch))
        assert first.status_code == 200, first.text
        before = rows()
        again = await lrs.post("/statements", json=copy.deepcopy(batch))
        assert again.status_code == 200, again.text
        with_ids = [i for i, s in enumerate(batch) if "id" in s]
        assert [again.json()[i] for i in with_ids] == [first.json()[i] for i in with_ids]
        after = rows()
        assert {k: after[k] for k in before} == before
        assert len(after) == len(before) + len(batch) - len(with_ids)  # the id-less are new
        for s in batch:  # PUT, twice each: 204, and no row changes
            sid = s.get("id") or str(uuid.uuid4())
            for _ in range(2):
                body = {k: v for k, v in copy.deepcopy(s).items() if k != "id"}
                r = await lrs.put("/statements", params={"statementId": sid}, json=body)
                assert r.status_code == 204, r.text
        final = rows()
        assert {k: final[k] for k in before} == before


def _attachment(**change) -> dict:
    att = {
        "usageType": "http://adlnet.gov/expapi/attachments/signature",
        "display": {"en-US": "a signature"},
        "contentType": "application/octet-stream",
        "length": 12,
        "sha2": "a" * 64,
        "fileUrl": "https://example.org/files/sig",
        **change,
    }
    return {**copy.deepcopy(ACTIVITY), "attachments": [att]}


def _definition(**definition) -> dict:
    s = copy.deepcopy(ACTIVITY)
    s["object"]["definition"] = definition
    return s


def _with(path: str, value) -> dict:
    s = copy.deepcopy(ACTIVITY)
    *parents, last = path.split(".")
    node = s
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return s


_TWO = [{"mbox": "mailto:app@example.org"}, {"mbox": "mailto:ada@example.org"}]
INVALID = {  # "XAPI-nnnnn what": (statement, the field the 400 names)
    "XAPI-00013 attachment display not a language map": (
        _attachment(display={"not a tag!": "x"}), "statement.attachments[0].display"),
    "XAPI-00102 attachment usageType not an IRI": (
        _attachment(usageType="signature"), "statement.attachments[0].usageType"),
    "XAPI-00103 attachment display a number": (
        _attachment(display=123), "statement.attachments[0].display"),
    "XAPI-00104 attachment description not a language map": (
        _attachment(description="words"), "statement.attachments[0].description"),
    "XAPI-00105 attachment contentType not a string": (
        _attachment(contentType=5), "statement.attachments[0].contentType"),
    "XAPI-00106 attachment length a string": (
        _attachment(length="12"), "statement.attachments[0].length"),
    "XAPI-00107 attachment sha2 not a string": (
        _attachment(sha2=123), "statement.attachments[0].sha2"),
    "XAPI-00121 attachment fileUrl not an IRL": (
        _attachment(fileUrl="urn:x:not-fetchable"), "statement.attachments[0].fileUrl"),
    "XAPI-00064 choices without interactionType": (
        _definition(choices=[{"id": "a", "description": {"en": "A"}}]),
        "statement.object.definition.choices"),
    "XAPI-00064 correctResponsesPattern without interactionType": (
        _definition(correctResponsesPattern=["a"]),
        "statement.object.definition.correctResponsesPattern"),
    "XAPI-00092 context.statement an Activity": (
        _with("context.statement", {"objectType": "Activity", "id": str(uuid.uuid4())}),
        "statement.context.statement.objectType"),
    "XAPI-00024 authority an identified Group": (
        _with("authority", {"objectType": "Group", "mbox": "mailto:g@example.org", "member": _TWO}),
        "statement.authority"),
    "XAPI-00098 authority a Group of one": (
        _with("authority", {"objectType": "Group", "member": _TWO[:1]}), "statement.authority.member"),
    "XAPI-00100 authority a Group of three": (
        _with("authority", {"objectType": "Group",
                            "member": [*_TWO, {"mbox": "mailto:c@example.org"}]}),
        "statement.authority.member"),
    "XAPI-00124 duration with weeks and days": (
        _with("result.duration", "P4W1D"), "statement.result.duration"),
    "contextActivities objectType GroupActivity (issue #13 names no number)": (
        _with("context.contextActivities", {"grouping": [{"id": "urn:hub-ext:course:ds101"}],
                                            "parent": {"objectType": "GroupActivity",
                                                       "id": "https://example.org/x"}}),
        "statement.context.contextActivities.parent[0].objectType"),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(INVALID))
async def test_an_invalid_statement_is_refused_with_the_field(any_lrs, what):
    """Issue #13, defect 4: statements the specification calls invalid (the XAPI number is the
    test's id) were stored; each is refused with 400 naming the field, and nothing is stored.

    Readings: XAPI-00121 takes an IRL to be an absolute URL with an authority
    (``scheme://...``), so a URN is not one; a Group as ``authority`` is an OAuth consumer and
    its user, so exactly two members and no identifier (XAPI-00024, -00098, -00100); the
    ``objectType`` of a context activity, when given, is ``Activity`` (as for an object)."""
    statement, field = INVALID[what]
    before = count(any_lrs.app)
    r = await any_lrs.post("/statements", json=statement)
    body = assert_error(r, 400, "bad_request")
    assert body["field"] == field, body
    assert count(any_lrs.app) == before


def test_the_valid_neighbours_are_still_accepted():
    """What the checks of defect 4 must not refuse: a duration in weeks alone, an
    interaction with its type and components, an authority of two anonymous members."""
    for statement in (
        _with("result.duration", "P4W"),
        _definition(
            interactionType="choice",
            correctResponsesPattern=["a"],
            choices=[{"id": "a", "description": {"en": "A"}}],
        ),  # fmt: skip
        _with("authority", {"objectType": "Group", "member": _TWO}),
        _with("context.statement", {"objectType": "StatementRef", "id": str(uuid.uuid4())}),
        _attachment(description={"en": "signed"}),
    ):
        validate_statement(copy.deepcopy(statement))


async def test_a_single_context_activity_is_read_back_as_a_list(any_lrs):
    """Issue #13, defect 5, XAPI-00096: a context activity given as one object is returned as
    an array of one (by statementId and in a query)."""
    s = _with("context.contextActivities", {"grouping": {"id": "urn:hub-ext:course:ds101"},
                                            "parent": {"id": "https://example.org/unit/1"}})  # fmt: skip
    sid = (await any_lrs.post("/statements", json=s)).json()[0]
    got = (await any_lrs.get("/statements", params={"statementId": sid})).json()
    assert got["context"]["contextActivities"] == {
        "grouping": [{"id": "urn:hub-ext:course:ds101"}],
        "parent": [{"id": "https://example.org/unit/1"}],
    }


async def test_format_ids_and_canonical(any_lrs):
    """Issue #13, defect 5: ``format=ids`` (XAPI-00169) gives Agents, Groups, Activities and
    Verbs by their identifiers only (an anonymous Group by its members'); ``format=canonical``
    with ``Accept-Language`` (XAPI-00171, -00172) one language per language map, the best
    match (a reading: ``en`` matches ``en-US``; with no match, the map's first language; the
    statement's own definition stands for the canonical one, as this LRS keeps no other)."""
    s = copy.deepcopy(ACTIVITY)
    s["verb"]["id"] = f"http://example.org/verbs/lived-{uuid.uuid4().hex[:8]}"
    s["verb"]["display"] = {"en-US": "experienced", "fr-FR": "a vécu"}
    s["object"]["definition"]["name"] = {"en": "Week 1", "fr": "Semaine 1", "de": "Woche 1"}
    s["context"]["instructor"] = {"name": "Grace", "mbox": "mailto:grace@example.org"}
    sid = (await any_lrs.post("/statements", json=s)).json()[0]
    ids = (await any_lrs.get("/statements", params={"statementId": sid, "format": "ids"})).json()
    assert ids["actor"] == {"objectType": "Agent", "mbox": "mailto:ada@example.org"}
    assert ids["verb"] == {"id": s["verb"]["id"]}
    assert ids["object"] == {"objectType": "Activity", "id": s["object"]["id"]}
    assert ids["context"]["instructor"] == {
        "objectType": "Agent",
        "mbox": "mailto:grace@example.org",
    }
    assert ids["authority"].keys() == {"objectType", "account"}
    assert ids["result"] == s["result"]  # the rest as it is
    group = {**copy.deepcopy(ACTIVITY), "actor": {"objectType": "Group", "name": "team", "member": [
        {"name": "Ada", "mbox": "mailto:ada@example.org"}, AGENT]}}  # fmt: skip
    gid = (await any_lrs.post("/statements", json=group)).json()[0]
    r = await any_lrs.get("/statements", params={"statementId": gid, "format": "ids"})
    assert r.json()["actor"] == {"objectType": "Group", "member": [
        {"objectType": "Agent", "mbox": "mailto:ada@example.org"},
        {"objectType": "Agent", "account": AGENT["account"]}]}  # fmt: skip
    params = {"statementId": sid, "format": "canonical"}
    fr = (
        await any_lrs.get(
            "/statements", params=params, headers={"Accept-Language": "fr;q=0.9, de;q=0.1"}
        )
    ).json()
    assert fr["verb"]["display"] == {"fr-FR": "a vécu"}
    assert fr["object"]["definition"]["name"] == {"fr": "Semaine 1"}
    de = (
        await any_lrs.get(
            "/statements", params=params, headers={"Accept-Language": "de-AT, en;q=0.5"}
        )
    ).json()
    assert de["object"]["definition"]["name"] == {"de": "Woche 1"}
    assert de["verb"]["display"] == {"en-US": "experienced"}
    query = {"verb": s["verb"]["id"], "format": "canonical", "limit": "1"}
    listed = (
        await any_lrs.get("/statements", params=query, headers={"Accept-Language": "fr"})
    ).json()
    assert listed["statements"][0]["object"]["definition"]["name"] == {"fr": "Semaine 1"}
    exact = (await any_lrs.get("/statements", params={"statementId": sid})).json()
    assert exact["object"]["definition"]["name"] == s["object"]["definition"]["name"]


async def test_filters_take_in_statements_that_target_a_match(any_lrs):
    """Issue #13, defect 5, XAPI-00162: a query by verb also returns the statements whose
    object is a StatementRef to a statement that matches (recursively; the target may be
    voided). A reading: a voiding statement is returned only when it matches by itself."""
    verb = f"http://example.org/verbs/ref-{uuid.uuid4().hex[:8]}"
    target = {**copy.deepcopy(ACTIVITY), "verb": {"id": verb}}
    tid = (await any_lrs.post("/statements", json=target)).json()[0]
    other = "http://adlnet.gov/expapi/verbs/commented"

    def ref(to: str) -> dict:
        s = {**copy.deepcopy(ACTIVITY), "verb": {"id": other},
             "object": {"objectType": "StatementRef", "id": to.upper()}}  # fmt: skip
        del s["context"]["platform"]  # only with an Activity object
        return s

    r1 = (await any_lrs.post("/statements", json=ref(tid))).json()[0]
    r2 = (await any_lrs.post("/statements", json=ref(r1))).json()[0]
    got = (await any_lrs.get("/statements", params={"verb": verb})).json()["statements"]
    assert {s["id"] for s in got} == {tid, r1, r2}
    void = {"actor": ACTIVITY["actor"], "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
            "object": {"objectType": "StatementRef", "id": tid}}  # fmt: skip
    assert (await any_lrs.post("/statements", json=void)).status_code == 200
    got = (await any_lrs.get("/statements", params={"verb": verb})).json()["statements"]
    assert {s["id"] for s in got} == {r1, r2}  # the voided target is not, what targets it is


async def test_the_agent_filter_matches_the_actor_or_the_object(any_lrs):
    """Issue #13, defect 5: ``agent`` returns the statements whose actor or object is that
    Agent (xAPI 1.0.3, Communication 2.1.3, with related_agents=false)."""
    who = {"mbox": f"mailto:{uuid.uuid4().hex[:8]}@example.org"}
    as_actor = {**copy.deepcopy(ACTIVITY), "actor": who}
    as_object = {**copy.deepcopy(ACTIVITY), "object": {"objectType": "Agent", **who}}
    del as_object["context"]["platform"]
    ids = (await any_lrs.post("/statements", json=[as_actor, as_object])).json()
    got = (await any_lrs.get("/statements", params={"agent": json.dumps(who)})).json()["statements"]
    assert sorted(s["id"] for s in got) == sorted(ids)
