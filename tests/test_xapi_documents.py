"""The xAPI 1.0.3 document resources (State, Activity Profile, Agent Profile), Activities
and Agents of the events service, over real HTTP, on SQLite and on PostgreSQL.

Issue #13, defect 7. Each store gets a real events service in this process with two
sources, one of ds101 and one of stat200 (:func:`tests.events_fixtures.xapi_clients`);
the course boundary is tried from both sides.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import uuid

import pytest

from tests.events_fixtures import postgres_url, two_courses_lms  # noqa: F401
from tests.test_xapi import ACTIVITY, assert_error

lms = two_courses_lms()

ADA = {"objectType": "Agent", "mbox": "mailto:ada@example.org"}
BOB = {"objectType": "Agent", "account": {"homePage": "https://lms.example.org", "name": "bob"}}


def activity() -> str:
    return f"https://lms.example.org/activity/{uuid.uuid4().hex[:12]}"


def state(act: str, agent: dict = ADA, **more) -> dict:
    return {"activityId": act, "agent": json.dumps(agent), **more}


def etag(content: bytes) -> str:
    return f'"{hashlib.sha1(content).hexdigest()}"'


# --------------------------------------------------------------------------- State


async def test_a_state_document_is_stored_and_read_back_with_its_etag_and_type(lms):
    """PUT, then GET: the same bytes, their Content-Type, the ETag (the SHA-1 of the
    content, quoted, lowercase: XAPI-00322) and Last-Modified; HEAD: the same headers and
    no body (XAPI-00125); DELETE: 204 and then 404."""
    lrs = lms["ds101"]
    params = state(activity(), stateId="bookmark")
    content = bytes(range(256))  # any bytes: a document is not necessarily text
    r = await lrs.put(
        "/activities/state", params=params, content=content,
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert r.status_code == 204, r.text
    r = await lrs.get("/activities/state", params=params)
    assert r.status_code == 200 and r.content == content
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["ETag"] == etag(content)
    assert r.headers["Last-Modified"].endswith("GMT")
    head = await lrs.head("/activities/state", params=params)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == r.headers["ETag"]
    assert head.headers["Content-Type"] == r.headers["Content-Type"]
    assert (await lrs.delete("/activities/state", params=params)).status_code == 204
    assert_error(await lrs.get("/activities/state", params=params), 404, "not_found")


async def test_post_merges_json_documents_at_the_top_level(lms):
    """XAPI-00183, -00184, -00234: the posted object's properties replace the stored ones,
    whole (no deeper merge); a POST where nothing is stored stores it (XAPI-00233)."""
    lrs = lms["ds101"]
    params = state(activity(), stateId="vars")
    first = {"x": "foo", "y": "bar", "deep": {"a": 1, "b": 2}}
    r = await lrs.post("/activities/state", params=params, json=first)
    assert r.status_code == 204, r.text
    assert (await lrs.get("/activities/state", params=params)).json() == first
    r = await lrs.post(
        "/activities/state", params=params, json={"x": "bash", "z": "faz", "deep": {"c": 3}}
    )
    assert r.status_code == 204, r.text
    got = await lrs.get("/activities/state", params=params)
    assert got.json() == {"x": "bash", "y": "bar", "z": "faz", "deep": {"c": 3}}
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.headers["ETag"] == etag(got.content)


@pytest.mark.parametrize(
    "stored,posted",
    [
        (("text/plain", b"hello"), ("application/json", b'{"a": 1}')),  # stored not JSON
        (("application/json", b'{"a": 1}'), ("text/plain", b"hello")),  # posted not JSON
        (("application/json", b"[1, 2]"), ("application/json", b'{"a": 1}')),  # not an object
        (("application/json", b'{"a": 1}'), ("application/json", b'"a string"')),
        (("application/json", b'{"a": 1}'), ("application/json", b"{not json")),  # XAPI-00235
    ],
)
async def test_post_refuses_to_merge_what_is_not_a_json_object_and_changes_nothing(
    lms, stored, posted
):
    """XAPI-00229, -00232, -00235: 400, and the stored document is as it was."""
    lrs = lms["ds101"]
    params = state(activity(), stateId="doc")
    r = await lrs.put("/activities/state", params=params, content=stored[1],
                      headers={"Content-Type": stored[0]})  # fmt: skip
    assert r.status_code == 204
    r = await lrs.post("/activities/state", params=params, content=posted[1],
                       headers={"Content-Type": posted[0]})  # fmt: skip
    body = assert_error(r, 400, "bad_request")
    assert "JSON" in body["message"], body
    got = await lrs.get("/activities/state", params=params)
    assert got.content == stored[1] and got.headers["Content-Type"].startswith(stored[0])


async def test_state_ids_since_registration_and_deleting_all_of_a_context(lms):
    """The stateId list (XAPI-00193), ``since`` exclusive (XAPI-00195), ``registration``
    keeping states apart (XAPI-00218, -00220), DELETE without stateId deleting every state
    of the activity and agent (and registration, when given) only (XAPI-00194)."""
    lrs = lms["ds101"]
    act, reg = activity(), str(uuid.uuid4())
    for sid in ("a", "b"):
        assert (
            await lrs.put("/activities/state", params=state(act, stateId=sid), json={})
        ).status_code == 204
    assert (
        await lrs.put(
            "/activities/state", params=state(act, registration=reg, stateId="r"), json={}
        )
    ).status_code == 204
    assert (
        await lrs.put("/activities/state", params=state(act, BOB, stateId="bob"), json={})
    ).status_code == 204
    r = await lrs.get("/activities/state", params=state(act))
    assert r.status_code == 200 and sorted(r.json()) == ["a", "b"]
    assert "Last-Modified" in r.headers
    r = await lrs.get("/activities/state", params=state(act, registration=reg.upper()))
    assert r.json() == ["r"]
    b = await lrs.get("/activities/state", params=state(act, stateId="b"))
    since = (await lrs.get("/activities/state", params=state(act, stateId="a"))).headers
    assert b.status_code == 200 and since
    # since: only what changed after it (exclusive); the store keeps microseconds
    await asyncio.sleep(0.01)
    from datetime import UTC, datetime

    mark = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.01)
    assert (
        await lrs.put("/activities/state", params=state(act, stateId="c"), json={})
    ).status_code == 204
    r = await lrs.get("/activities/state", params=state(act, since=mark))
    assert r.json() == ["c"]
    assert (await lrs.delete("/activities/state", params=state(act))).status_code == 204
    assert (await lrs.get("/activities/state", params=state(act))).json() == []
    # another registration's and another agent's are still there
    assert (await lrs.get("/activities/state", params=state(act, registration=reg))).json() == ["r"]
    assert (await lrs.get("/activities/state", params=state(act, BOB))).json() == ["bob"]


async def test_a_state_may_be_overwritten_without_concurrency_headers(lms):
    """Communication 3.1: "The State Resource will permit PUT, POST and DELETE requests
    without concurrency headers"; a precondition given is still checked (412)."""
    lrs = lms["ds101"]
    params = state(activity(), stateId="s")
    assert (await lrs.put("/activities/state", params=params, json={"v": 1})).status_code == 204
    assert (await lrs.put("/activities/state", params=params, json={"v": 2})).status_code == 204
    r = await lrs.put(
        "/activities/state", params=params, json={"v": 3}, headers={"If-Match": '"0000"'}
    )
    assert_error(r, 412, "precondition_failed")
    assert (await lrs.get("/activities/state", params=params)).json() == {"v": 2}


# --------------------------------------------------------------------------- profiles: concurrency


PROFILES = {
    "activity": ("/activities/profile", lambda: {"activityId": activity()}),
    "agent": ("/agents/profile", lambda: {"agent": json.dumps({"mbox": f"mailto:{uuid.uuid4().hex[:8]}@example.org"})}),
}  # fmt: skip


@pytest.mark.parametrize("which", sorted(PROFILES))
async def test_profile_documents_follow_the_etag_rules(lms, which):
    """Communication 3.1 (XAPI-00322, XAPI-00273): a PUT of an existing profile document
    without If-Match / If-None-Match is 409 and says how to resolve it; a wrong If-Match,
    or If-None-Match: * on an existing one, is 412; nothing changes on a refusal; the
    right If-Match (in any case: the spec's ETag is lowercase, a client may not be) wins."""
    lrs = lms["ds101"]
    path, where = PROFILES[which]
    params = {**where(), "profileId": "prefs"}
    r = await lrs.put(path, params=params, json={"v": 1}, headers={"If-None-Match": "*"})
    assert r.status_code == 204, r.text
    tag = (await lrs.get(path, params=params)).headers["ETag"]
    body = assert_error(await lrs.put(path, params=params, json={"v": 2}), 409, "conflict")
    assert "If-Match" in body["message"]
    for headers in ({"If-Match": '"' + "0" * 40 + '"'}, {"If-None-Match": "*"}, {"If-None-Match": tag},
                    {"If-Match": tag, "If-None-Match": "*"}):  # fmt: skip
        assert_error(
            await lrs.put(path, params=params, json={"v": 2}, headers=headers),
            412,
            "precondition_failed",
        )
        assert_error(
            await lrs.post(path, params=params, json={"v": 2}, headers=headers),
            412,
            "precondition_failed",
        )
    assert_error(
        await lrs.delete(path, params=params, headers={"If-Match": '"bad"'}),
        412,
        "precondition_failed",
    )
    assert (await lrs.get(path, params=params)).json() == {"v": 1}
    r = await lrs.put(
        path, params=params, json={"v": 2}, headers={"If-Match": tag.upper().replace('"', '"')}
    )
    assert r.status_code == 204, r.text
    got = await lrs.get(path, params=params)
    assert got.json() == {"v": 2} and got.headers["ETag"] != tag
    r = await lrs.post(
        path, params=params, json={"w": 3}, headers={"If-Match": got.headers["ETag"]}
    )
    assert r.status_code == 204
    assert (await lrs.get(path, params=params)).json() == {"v": 2, "w": 3}
    r = await lrs.get(path, params={k: v for k, v in params.items() if k != "profileId"})
    assert r.json() == ["prefs"]  # XAPI-00270, -00289
    assert (await lrs.delete(path, params=params)).status_code == 204  # no If-Match: allowed
    assert_error(await lrs.get(path, params=params), 404, "not_found")
    r = await lrs.put(path, params=params, json={"v": 1}, headers={"If-Match": "*"})
    assert_error(r, 412, "precondition_failed")  # If-Match: * needs one to exist


async def test_two_first_writes_of_one_document_at_once_store_one(lms):
    """Two PUTs with If-None-Match: * of a document that does not exist yet, at once: one
    wins (204), the other is refused (412), never a 500 from the unique key."""
    lrs = lms["ds101"]
    params = {"activityId": activity(), "profileId": "race"}
    results = await asyncio.gather(*(
        lrs.put("/activities/profile", params=params, json={"n": n}, headers={"If-None-Match": "*"})
        for n in range(4)
    ))  # fmt: skip
    assert sorted(r.status_code for r in results) == [204, 412, 412, 412], [r.text for r in results]


# --------------------------------------------------------------------------- the course boundary


async def test_a_source_never_reads_overwrites_nor_deletes_another_courses_documents(lms):
    """A ds101 source's documents are not stat200's: the stat200 source gets 404 and empty
    lists, its PUT of the same names makes documents of its own, its DELETEs (one, and all
    of a context's) remove nothing of ds101's; the same for both profiles."""
    ds101, stat200 = lms["ds101"], lms["stat200"]
    act = activity()
    cases = [
        ("/activities/state", state(act), "stateId"),
        ("/activities/profile", {"activityId": act}, "profileId"),
        ("/agents/profile", {"agent": json.dumps(ADA)}, "profileId"),
    ]
    for path, where, id_param in cases:
        one = {**where, id_param: f"secret-{uuid.uuid4().hex[:6]}"}
        assert (
            await ds101.put(path, params=one, json={"grade": "A"}, headers={"If-None-Match": "*"})
        ).status_code == 204
        assert_error(await stat200.get(path, params=one), 404, "not_found")
        assert (await stat200.head(path, params=one)).status_code == 404
        assert one[id_param] not in (await stat200.get(path, params=where)).json()
        # the same name in stat200 is another document: no 409 (there is none there), no 412
        r = await stat200.put(path, params=one, json={"grade": "F"}, headers={"If-None-Match": "*"})
        assert r.status_code == 204, r.text
        r = await stat200.post(path, params=one, json={"more": 1})
        assert r.status_code == 204
        assert (await stat200.delete(path, params=one)).status_code == 204
        if path == "/activities/state":
            assert (await stat200.delete(path, params=where)).status_code == 204
        got = await ds101.get(path, params=one)
        assert got.status_code == 200 and got.json() == {"grade": "A"}, (path, got.text)


async def test_activities_and_agents_answer_from_the_sources_course_only(lms):
    """Activities: the definitions of every statement of the course about the activity,
    language maps merged (XAPI-00254), another course's left out; an unknown activity is
    its id alone. Agents: a Person object (XAPI-00237 to -00242, -00248) with the names
    the course's statements gave the agent, not another course's."""
    ds101, stat200 = lms["ds101"], lms["stat200"]
    act = activity()
    actor = {
        "objectType": "Agent",
        "name": "Ada L.",
        "mbox": f"mailto:{uuid.uuid4().hex[:8]}@example.org",
    }
    for course, client, lang, text in (("ds101", ds101, "en", "Quiz"), ("ds101", ds101, "fr", "Quiz FR"),
                                        ("stat200", stat200, "de", "Geheim")):  # fmt: skip
        s = copy.deepcopy(ACTIVITY)
        s["actor"] = {**actor, "name": f"{actor['name']} ({course})"}
        s["object"] = {
            "id": act,
            "definition": {
                "name": {lang: text},
                "type": "http://adlnet.gov/expapi/activities/assessment",
            },
        }
        s["context"]["contextActivities"]["grouping"] = [{"id": f"urn:hub-ext:course:{course}"}]
        assert (await client.post("/statements", json=s)).status_code == 200
    got = (await ds101.get("/activities", params={"activityId": act})).json()
    assert got == {
        "objectType": "Activity",
        "id": act,
        "definition": {
            "name": {"en": "Quiz", "fr": "Quiz FR"},
            "type": "http://adlnet.gov/expapi/activities/assessment",
        },
    }
    other = (await stat200.get("/activities", params={"activityId": act})).json()
    assert other["definition"]["name"] == {"de": "Geheim"}
    unknown = activity()
    assert (await ds101.get("/activities", params={"activityId": unknown})).json() == {
        "objectType": "Activity",
        "id": unknown,
    }
    query = {"objectType": "Agent", "mbox": actor["mbox"]}
    person = (await ds101.get("/agents", params={"agent": json.dumps(query)})).json()
    assert person == {"objectType": "Person", "name": ["Ada L. (ds101)"], "mbox": [actor["mbox"]]}
    assert (await stat200.get("/agents", params={"agent": json.dumps(query)})).json()["name"] == [
        "Ada L. (stat200)"
    ]
    stranger = {"account": {"homePage": "https://x.example.org", "name": "nobody"}}
    assert (await ds101.get("/agents", params={"agent": json.dumps(stranger)})).json() == {
        "objectType": "Person", "account": [stranger["account"]]}  # fmt: skip
    head = await ds101.head("/agents", params={"agent": json.dumps(stranger)})
    assert head.status_code == 200 and head.content == b""


# --------------------------------------------------------------------------- bad parameters

_ACT = "https://lms.example.org/a"
BAD_PARAMETERS = [  # (method, path, params, the parameter named)
    ("GET", "/activities/state", {"agent": json.dumps(ADA)}, "activityId"),  # XAPI-00208
    ("PUT", "/activities/state", {"agent": json.dumps(ADA), "stateId": "s"}, "activityId"),  # -00210
    ("DELETE", "/activities/state", {"agent": json.dumps(ADA)}, "activityId"),  # -00207
    ("GET", "/activities/state", {"activityId": _ACT}, "agent"),  # -00213
    ("PUT", "/activities/state", {"activityId": _ACT, "agent": "{not json", "stateId": "s"}, "agent"),  # -00199
    ("GET", "/activities/state", {"activityId": _ACT, "agent": json.dumps({"name": "no id"})}, "agent"),
    ("PUT", "/activities/state", {"activityId": _ACT, "agent": json.dumps(ADA)}, "stateId"),  # -00206
    ("POST", "/activities/state", {"activityId": _ACT, "agent": json.dumps(ADA)}, "stateId"),  # -00211
    ("GET", "/activities/state", {"activityId": _ACT, "agent": json.dumps(ADA), "registration": "nope"}, "registration"),  # -00201
    ("GET", "/activities/state", {"activityId": _ACT, "agent": json.dumps(ADA), "since": "yesterday"}, "since"),  # -00204
    ("GET", "/activities/state", {"activityId": "not an iri", "agent": json.dumps(ADA)}, "activityId"),
    ("GET", "/activities/state", {"activityId": _ACT, "agent": json.dumps(ADA), "StateId": "s"}, None),  # case: XAPI-00325
    ("GET", "/activities/state", {"activityId": _ACT, "agent": json.dumps(ADA), "stateId": "s" * 600}, "stateId"),
    ("PUT", "/activities/profile", {"activityId": _ACT}, "profileId"),  # XAPI-00302
    ("DELETE", "/activities/profile", {"activityId": _ACT}, "profileId"),  # -00300
    ("GET", "/activities/profile", {"profileId": "p"}, "activityId"),  # -00296
    ("GET", "/activities/profile", {"activityId": _ACT, "since": "2026-13-45T00:00:00Z"}, "since"),  # -00295
    ("PUT", "/agents/profile", {"profileId": "p"}, "agent"),  # -00264
    ("PUT", "/agents/profile", {"agent": json.dumps({"objectType": "Group", "member": [ADA]}), "profileId": "p"}, "agent"),  # -00257
    ("DELETE", "/agents/profile", {"agent": json.dumps(ADA)}, "profileId"),  # -00265
    ("GET", "/agents/profile", {"agent": json.dumps(ADA), "since": "x"}, "since"),  # -00260
    ("GET", "/activities", {}, "activityId"),  # -00250
    ("GET", "/activities", {"activityId": "no scheme"}, "activityId"),
    ("GET", "/agents", {}, "agent"),  # -00243
    ("GET", "/agents", {"agent": json.dumps({"objectType": "Agent"})}, "agent"),  # -00249
    ("GET", "/agents", {"agent": "[" * 5000}, "agent"),
]  # fmt: skip


@pytest.mark.parametrize("case", range(len(BAD_PARAMETERS)))
async def test_bad_parameters_get_400_naming_them(lms, case):
    method, path, params, named = BAD_PARAMETERS[case]
    r = await lms["ds101"].request(
        method, path, params=params, json={} if method in ("PUT", "POST") else None
    )
    body = assert_error(r, 400, "bad_request")
    if named:
        assert named in body["message"] and body["parameter"] == named, body
