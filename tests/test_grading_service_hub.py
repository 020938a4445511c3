"""The grading service behind a real JupyterHub and its proxy, grading in bubblewrap.

Acceptance of the service's part of issue #11: an nbgrader-style assignment fetched,
answered, submitted and graded end to end with the points nbgrader's rules give; every
refusal with its reason; 403 for another learner, another course's teacher and a token
made for another course; the gradebook (JSON, CSV, page), the feedback (notebook, page),
manual grading, a regrade after the tests change, and the scores in the event store.

The one thing the test controls that a real hub would not is the service's clock (a
config file reads an offset the test writes), so a timed session can end without waiting.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import httpx
import nbformat
import pytest
import pytest_asyncio

from hub_ext.services.events.store import EventStore
from hub_ext.services.grading.statements import COMPLETED, SCORED
from tests.analytics_fixtures import wait_until
from tests.grading_fixtures import ANSWERS, EXPECTED, HIDDEN_MARKER, submission
from tests.hubtest import HubProcess, free_port, node_available
from tests.test_grading_service_fixtures import grading_catalog, moment

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PREFIX = "/services/grading"
USERS = ("alice", "bob", "carol", "tina", "sam", "admin")


def catalog(directory):
    return grading_catalog(
        directory,
        {
            "ds101": {
                "learners": ["alice", "bob"],
                "teachers": ["tina"],
                "assignments": [
                    {"id": "week1", "title": "Week 1", "due": moment(7), "attempts": 2},
                    {"id": "early", "release": moment(5), "due": moment(10)},
                    {"id": "closed", "release": moment(-10), "due": moment(-2)},
                    {
                        "id": "toolate",
                        "release": moment(-10),
                        "due": moment(-5),
                        "late": {"penalty_per_day": 10, "until": moment(-2)},
                    },
                    {
                        "id": "late",
                        "release": moment(-10),
                        "due": moment(-1.5),
                        "late": {"penalty_per_day": 10, "until": moment(5)},
                    },
                    {"id": "exam", "due": moment(7), "timed": "10m"},
                ],
            },
            "stat200": {
                "learners": ["alice", "carol"],
                "teachers": ["sam"],
                "assignments": [{"id": "hw1", "due": moment(7)}],
            },
        },
    )


CLOCK = """
from datetime import UTC, datetime, timedelta
from pathlib import Path

def _now(offset=Path({path!r})):
    text = offset.read_text().strip() if offset.exists() else ""
    return datetime.now(UTC) + timedelta(seconds=float(text or 0))

c.GradingService.now = _now
"""


def hub_config(catalog_path, root, port) -> str:
    options = {
        "Autograder.sandbox": "bubblewrap",
        "GradingService.config_file": str(root / "clock.py"),
        "GradingService.hub_cache_max_age": 0,
        "GradingService.max_body_bytes": 256 * 1024,
        "GradingQueue.idle_seconds": 0.5,
        # not DEBUG: nbclient logs every kernel message there, hidden tests included
        "Application.log_level": "INFO",
    }
    return f"""
from hub_ext.courses import Catalog
from hub_ext.services.grading.hubconfig import grading_roles, grading_service
_catalog = Catalog.load({str(catalog_path)!r})
c.JupyterHub.services = [*c.JupyterHub.get("services", []), grading_service(
    _catalog, catalog_path={str(catalog_path)!r}, data_dir={str(root / "grading")!r},
    events_db={f"sqlite:///{root / 'events.sqlite'}"!r}, public_url="https://hub.test",
    port={port}, options={options!r})]
c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []),
                           *grading_roles(_catalog, admin_users={{"admin"}})]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(tmp_path_factory):
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    root = tmp_path_factory.mktemp("grading-hub")
    catalog_path = catalog(root / "catalog")
    (root / "clock.py").write_text(CLOCK.format(path=str(root / "clock-offset")))
    events = EventStore(f"sqlite:///{root / 'events.sqlite'}")
    events.create()
    events.dispose()
    hub = HubProcess(
        root / "hub", catalog_path, extra_config=hub_config(catalog_path, root, free_port())
    )
    await hub.start()
    try:
        tokens = {u: await hub.user_token(u) for u in USERS}
        ns = type("Env", (), {"hub": hub, "tokens": tokens, "root": root})()
        ns.catalog_dir = root / "catalog"
        await wait_until(lambda: _up(ns), 60, 0.5, "the grading service answering")
        yield ns
    finally:
        await hub.shutdown()


async def _up(env) -> bool:
    try:
        return (await call(env, "admin", "/api/")).status_code == 200
    except httpx.HTTPError:
        return False


async def call(env, user, path, method="GET", token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if user or token:
        headers["Authorization"] = f"token {token or env.tokens[user]}"
    async with httpx.AsyncClient(timeout=60) as c:
        return await c.request(method, f"{env.hub.url}{PREFIX}{path}", headers=headers, **kwargs)


def refused(r, status: int, error: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == error and body["request_id"], body
    return body["message"]


async def fetch(env, user, course, assignment) -> nbformat.NotebookNode:
    r = await call(env, user, f"/api/courses/{course}/assignments/{assignment}/fetch", "POST")
    assert r.status_code == 200, r.text
    return nbformat.reads(r.text, as_version=4)


async def submit(env, user, course, assignment, nb, **kwargs):
    data = nbformat.writes(nb) if not isinstance(nb, bytes) else nb
    return await call(
        env, user, f"/api/courses/{course}/assignments/{assignment}/submissions", "POST",
        content=data, **kwargs,
    )  # fmt: skip


async def graded(env, user, submission_id, run: int = 1) -> dict:
    """The submission once its run ``run`` is done."""

    async def done():
        r = await call(env, user, f"/api/submissions/{submission_id}")
        body = r.json()
        result = body.get("result")
        return body if result and result["run"] >= run else None

    return await wait_until(done, 120, 0.5, f"submission {submission_id} graded (run {run})")


def points(detail: dict, run: int = 1) -> dict[str, float]:
    (found,) = [r for r in detail["runs"] if r["run"] == run]
    return {t["grade_id"]: t["points"] for t in found["result"]["tests"]}


async def test_fetch_submit_grade_end_to_end(env):
    r = await call(env, "alice", "/api/courses/ds101/assignments")
    assert r.status_code == 200, r.text
    listed = {a["id"]: a for a in r.json()["assignments"]}
    assert "early" not in listed and {"week1", "closed", "late", "exam"} <= set(listed)
    assert listed["week1"]["mine"]["fetched"] is False
    assert listed["week1"]["mine"]["attempts_left"] == 2

    student = await fetch(env, "alice", "ds101", "week1")
    assert HIDDEN_MARKER not in nbformat.writes(student)
    ids = {}
    for learner, kind in (("alice", "correct"), ("bob", "wrong")):
        nb = submission(student, ANSWERS[kind])
        r = await submit(env, learner, "ds101", "week1", nb)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["attempt"] == 1 and body["late"] == {"days": 0, "penalty": 0.0}
        assert len(body["sha256"]) == 64 and body["state"] == "queued"
        ids[learner] = body["id"]
    env.week1 = ids
    for learner, kind in (("alice", "correct"), ("bob", "wrong")):
        detail = await graded(env, learner, ids[learner])
        assert points(detail) == {k: pytest.approx(v) for k, v in EXPECTED[kind].items()}
        assert detail["result"]["final_score"] == sum(EXPECTED[kind].values())
        assert detail["result"]["max_score"] == 6

    r = await call(env, "alice", f"/api/submissions/{ids['alice']}/feedback")
    assert r.status_code == 200
    feedback = nbformat.reads(r.text, as_version=4)
    assert HIDDEN_MARKER not in r.text and len(feedback.cells) >= 8
    r = await call(env, "alice", f"/api/submissions/{ids['alice']}/notebook")
    assert nbformat.reads(r.text, as_version=4).cells[2].source == ANSWERS["correct"]["squares"]

    r = await call(env, "alice", "/api/courses/ds101/assignments")
    mine = {a["id"]: a for a in r.json()["assignments"]}["week1"]["mine"]
    assert mine["fetched"] and mine["attempts_used"] == 1 and mine["attempts_left"] == 1
    assert mine["latest"]["result"]["final_score"] == 5.0
    r = await call(env, "alice", "/api/courses/ds101/assignments/week1/submissions")
    assert [s["learner"] for s in r.json()["submissions"]] == ["alice"]
    r = await call(env, "tina", "/api/courses/ds101/assignments/week1/submissions")
    assert sorted(s["learner"] for s in r.json()["submissions"]) == ["alice", "bob"]
    r = await call(env, "tina", "/api/courses/ds101/assignments/week1/fetches")
    assert [f["learner"] for f in r.json()["fetches"]] == ["alice"]


async def test_gradebook_json_csv_and_pages(env):
    r = await call(env, "tina", "/api/courses/ds101/gradebook")
    assert r.status_code == 200
    book = {row["learner"]: row["assignments"] for row in r.json()["learners"]}
    assert book["alice"]["week1"]["final_score"] == 5.0
    assert book["bob"]["week1"]["final_score"] == 3.0
    assert book["alice"]["week1"]["needs_manual"] is False  # "explain" left unanswered: 0
    r = await call(env, "tina", "/api/courses/ds101/gradebook.csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by = {row["learner"]: row for row in rows}
    assert by["alice"]["week1"] == "5.0" and by["bob"]["week1"] == "3.0"
    assert by["alice"]["closed"] == ""

    teacher = await env.hub.login("tina")
    try:
        r = await teacher.get(f"{PREFIX}/courses/ds101/gradebook", headers={"Accept": "text/html"})
        assert r.status_code == 200, (r.status_code, r.url)
        assert "text/html" in r.headers["content-type"]
        assert "alice" in r.text and "5 of 6" in r.text and "gradebook.csv" in r.text
    finally:
        await teacher.aclose()
    learner = await env.hub.login("alice")
    try:
        page = f"{PREFIX}/submissions/{env.week1['alice']}"
        r = await learner.get(page, headers={"Accept": "text/html"})
        assert r.status_code == 200, (r.status_code, r.url)
        assert "test_squares" in r.text and "Final" in r.text and HIDDEN_MARKER not in r.text
        r = await learner.get(f"{PREFIX}/courses/ds101/gradebook", headers={"Accept": "text/html"})
        # a browser's refusal is a page that says what the JSON says, with the scope it needs
        assert r.status_code == 403 and "text/html" in r.headers["content-type"]
        assert "Not yours to see" in r.text and "custom:grading:grade:ds101" in r.text
        assert r.headers["x-request-id"] in r.text
        r = await learner.get(f"{PREFIX}/courses/ds101/gradebook")  # a program: the JSON error
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        # another learner's feedback page, in a browser
        r = await learner.get(
            f"{PREFIX}/submissions/{env.week1['bob']}", headers={"Accept": "text/html"}
        )
        assert r.status_code == 403 and "may not read submission" in r.text
    finally:
        await learner.aclose()


async def test_every_refusal_names_its_reason(env):
    nb = await fetch(env, "bob", "ds101", "closed")
    answered = submission(nb, ANSWERS["correct"])
    message = refused(
        await call(env, "alice", "/api/courses/ds101/assignments/early/fetch", "POST"),
        403,
        "not_released",
    )
    assert "is released at" in message
    refused(await submit(env, "alice", "ds101", "early", answered), 403, "not_released")
    assert "late submissions are refused" in refused(
        await submit(env, "alice", "ds101", "closed", answered), 403, "past_due"
    )
    assert "accepted until" in refused(
        await submit(env, "alice", "ds101", "toolate", answered), 403, "past_late_limit"
    )
    # late but accepted: two days (or parts of days) late, 10% each
    r = await submit(env, "alice", "ds101", "late", answered)
    assert r.status_code == 202, r.text
    assert r.json()["late"] == {"days": 2, "penalty": 0.2}
    detail = await graded(env, "alice", r.json()["id"])
    assert detail["result"]["score"] == 5.0 and detail["result"]["final_score"] == 4.0

    # attempts: alice used one of week1's two
    r = await submit(env, "alice", "ds101", "week1", submission(nb, ANSWERS["partial"]))
    assert r.status_code == 202 and r.json()["attempt"] == 2
    env.week1_second = r.json()["id"]
    assert "2 of 2 used" in refused(
        await submit(env, "alice", "ds101", "week1", answered), 403, "no_attempts_left"
    )

    # the timed exam: fetch first, then the session's end is the service's, not the learner's
    refused(await submit(env, "alice", "ds101", "exam", answered), 403, "not_fetched")
    r = await call(env, "alice", "/api/courses/ds101/assignments/exam/fetch", "POST")
    assert "x-grading-session-ends" in r.headers
    (env.root / "clock-offset").write_text(str(11 * 60))
    try:
        message = refused(
            await submit(env, "alice", "ds101", "exam", answered), 403, "session_over"
        )
        assert "started at" in message and "ended at" in message
    finally:
        (env.root / "clock-offset").write_text("0")
    r = await call(env, "tina", "/api/courses/ds101/assignments/exam/fetches")
    (row,) = r.json()["fetches"]
    assert row["learner"] == "alice" and row["session_ends_at"]

    # bad input: a clear answer, never a 500
    refused(await submit(env, "bob", "ds101", "week1", b"not json"), 400, "not_a_notebook")
    refused(await submit(env, "bob", "ds101", "week1", b'{"cells": 3}'), 400, "not_a_notebook")
    refused(await submit(env, "bob", "ds101", "week1", b"x" * (300 * 1024)), 413, "too_large")
    refused(await submit(env, "bob", "ds101", "nope", answered), 404, "not_found")
    refused(await call(env, "bob", "/api/courses/nope/assignments"), 404, "not_found")
    refused(await call(env, "bob", "/api/submissions/not-an-id"), 404, "not_found")
    # none of these used an attempt
    r = await call(env, "bob", "/api/courses/ds101/assignments")
    mine = {a["id"]: a for a in r.json()["assignments"]}["week1"]["mine"]
    assert mine["attempts_used"] == 1


async def test_only_the_learner_and_the_course_teachers_see_a_submission(env):
    sid = env.week1["alice"]
    for who in ("bob", "sam", "carol"):
        for path in (f"/api/submissions/{sid}", f"/api/submissions/{sid}/feedback"):
            refused(await call(env, who, path), 403, "forbidden")
    for who in ("alice", "tina", "admin"):
        assert (await call(env, who, f"/api/submissions/{sid}/feedback")).status_code == 200
    unknown = "00000000-0000-4000-8000-000000000000"
    refused(await call(env, "alice", f"/api/submissions/{unknown}"), 404, "not_found")
    assert (await call(env, None, f"/api/submissions/{sid}")).status_code == 401

    message = refused(await call(env, "carol", "/api/courses/ds101/assignments"), 403, "forbidden")
    assert "custom:grading:submit:ds101" in message
    message = refused(await call(env, "alice", "/api/courses/ds101/gradebook"), 403, "forbidden")
    assert "custom:grading:grade:ds101" in message
    message = refused(await submit(env, "tina", "ds101", "week1", b"{}"), 403, "forbidden")
    assert "custom:grading:submit:ds101" in message
    refused(await call(env, "sam", "/api/courses/ds101/gradebook"), 403, "forbidden")
    assert (await call(env, "sam", "/api/courses/stat200/gradebook")).status_code == 200


async def test_a_token_made_for_one_course_does_not_reach_another(env):
    # alice learns in both courses; a token of hers scoped to ds101 (stolen from there)
    r = await env.hub.api(
        "POST",
        "/users/alice/tokens",
        json={"scopes": ["access:services!service=grading", "custom:grading:submit:ds101"]},
    )
    assert r.status_code == 201, r.text
    stolen = r.json()["token"]
    assert (
        await call(env, None, "/api/courses/ds101/assignments", token=stolen)
    ).status_code == 200
    r = await call(env, None, "/api/courses/stat200/assignments", token=stolen)
    assert "custom:grading:submit:stat200" in refused(r, 403, "forbidden")
    r = await call(env, None, "/api/courses/stat200/assignments/hw1/fetch", "POST", token=stolen)
    refused(r, 403, "forbidden")
    # her own full token does reach stat200, and a ds101 submission stays ds101's
    assert (await call(env, "alice", "/api/courses/stat200/assignments")).status_code == 200
    r = await call(env, None, "/api/courses/stat200/gradebook", token=stolen)
    refused(r, 403, "forbidden")


async def test_manual_grading(env):
    sid = env.week1["alice"]
    path = f"/api/submissions/{sid}/manual"
    grade = {"grades": {"explain": {"points": 1, "comment": "Right: the sum over the count."}}}
    refused(await call(env, "alice", path, "POST", json=grade), 403, "forbidden")
    refused(await call(env, "sam", path, "POST", json=grade), 403, "forbidden")
    too_many = {"grades": {"explain": {"points": 2}}}
    assert "from 0 to 1" in refused(
        await call(env, "tina", path, "POST", json=too_many), 400, "bad_grades"
    )
    autograded = {"grades": {"test_squares": {"points": 2}}}
    refused(await call(env, "tina", path, "POST", json=autograded), 400, "bad_grades")
    refused(await call(env, "tina", path, "POST", content=b"[1]"), 400, "bad_json")
    r = await call(env, "tina", path, "POST", json=grade)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["final_score"] == 6.0
    assert r.json()["manual"]["explain"]["grader"] == "tina"
    # the new score is in the event store when the answer comes (no grading needed first)
    scored = sqlite3.connect(env.root / "events.sqlite").execute(
        "SELECT score FROM statements WHERE verb = ? AND raw LIKE ? ORDER BY timestamp",
        (SCORED, f"%{sid}%"),
    )
    assert [score for (score,) in scored] == [pytest.approx(83.33), pytest.approx(100.0)]
    r = await call(env, "tina", "/api/courses/ds101/gradebook")
    book = {row["learner"]: row["assignments"] for row in r.json()["learners"]}
    # alice's latest week1 submission is her second (partial); the manual grade was on the first
    assert book["alice"]["week1"]["submission"] == env.week1_second


async def test_regrade_after_the_tests_change(env):
    await graded(env, "alice", env.week1_second)
    source = env.catalog_dir / "squares.ipynb"
    original = source.read_text()
    nb = nbformat.read(str(source), as_version=4)
    tests = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_squares"
    )
    tests.source = "assert squares(2) == [1, 5], 'the new test'\n" + tests.source
    nbformat.write(nb, str(source))
    try:
        refused(
            await call(env, "alice", "/api/courses/ds101/assignments/week1/regrade", "POST"),
            403,
            "forbidden",
        )
        r = await call(env, "tina", "/api/courses/ds101/assignments/week1/regrade", "POST")
        assert r.status_code == 202, r.text
        queued = {q["learner"]: q for q in r.json()["queued"]}
        assert (
            set(queued) == {"alice", "bob"} and queued["alice"]["submission_id"] == env.week1_second
        )
        detail = await graded(env, "alice", env.week1_second, run=2)
        assert points(detail, 2)["test_squares"] == 0 and points(detail, 1)["test_squares"] == 2
        assert "the new test" in json.dumps(detail["runs"][1]["result"])
        bob = await graded(env, "bob", env.week1["bob"], run=2)
        assert bob["result"]["run"] == 2
    finally:
        source.write_text(original)


async def test_scores_reach_the_event_store(env):
    db = sqlite3.connect(env.root / "events.sqlite")

    async def settled():
        counts = await call(env, "admin", "/api/")
        return not (set(counts.json()["runs"]) - {"done"})

    await wait_until(settled, 120, 0.5, "every run done")
    rows = db.execute(
        "SELECT verb, learner, course_id, object_id, score, source, raw FROM statements"
    ).fetchall()
    by_run = {}
    for verb, learner, course, obj, score, source, raw in rows:
        ext = json.loads(raw)["result"]["extensions"]
        key = (ext["urn:hub-ext:grading:submission"], ext["urn:hub-ext:grading:run"])
        by_run.setdefault(key, []).append(verb)
        assert (
            source == "grading"
            and course == "ds101"
            and obj.startswith("urn:hub-ext:assignment:ds101:")
        )
        assert json.loads(raw)["actor"]["account"] == {
            "homePage": "https://hub.test",
            "name": learner,
        }
        assert 0 <= score <= 100
    # each run: completed once, scored once, and once more per manual grade that changed it
    assert all(v.count(COMPLETED) == 1 and v.count(SCORED) >= 1 for v in by_run.values()), by_run
    assert (env.week1["alice"], 1) in by_run and (env.week1_second, 2) in by_run
    scored = db.execute(
        "SELECT score, raw FROM statements WHERE verb = ? AND raw LIKE ? ORDER BY timestamp",
        (SCORED, f"%{env.week1['alice']}%"),
    ).fetchall()
    # autograded 5 of 6, then tina's manual point for the explanation (test_manual_grading)
    assert [score for score, _ in scored] == [pytest.approx(83.33), pytest.approx(100.0)]
    assert (
        "urn:hub-ext:grading:manual_revision" in json.loads(scored[-1][1])["result"]["extensions"]
    )


async def test_the_front_page_leads_each_caller_to_their_part(env):
    html = {"Accept": "text/html"}
    teacher = await call(env, "tina", "/", headers=dict(html))
    assert teacher.status_code == 200, teacher.text
    assert f"{PREFIX}/courses/ds101/gradebook" in teacher.text
    assert "stat200" not in teacher.text  # sam's course: not tina's
    learner = await call(env, "alice", "/", headers=dict(html))
    assert learner.status_code == 200 and "python -m hub_ext_assignments list" in learner.text
    assert "/gradebook" not in learner.text
    assert "(ds101)" in learner.text and "(stat200)" in learner.text
    # a browser without a session is sent to log in; a script gets the JSON 401
    anonymous = await call(env, None, "/", headers=dict(html), follow_redirects=False)
    assert anonymous.status_code == 302 and "/hub/" in anonymous.headers["Location"]
    assert (await call(env, None, "/")).status_code == 401
