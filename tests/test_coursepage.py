"""Course pages on a real hub, read by a real browser: the whole class, and who is refused.

Real JupyterHub and proxy, the real course pages service (its own token, its own role),
real single-user servers (the local backend), headless Chromium (tests/browser.py).
The development login stands in for the identity provider; what the provider's claims
do (put someone in ``course:ds101:learner`` at login) is done here through the hub's admin
API for ``frank``, who is in no catalog list and no roster.

The class of ds101: alice and bob and 119 more in the catalog, dora (username) and
eve@example.edu (email only) in its roster file, frank in the hub group only: 124.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.browser import axe, login, screenshot, serious_violations
from tests.conftest import write_catalog
from tests.grading_fixtures import write_source
from tests.hubtest import HubProcess, node_available

pytestmark = pytest.mark.asyncio(loop_scope="session")

CATALOG_LEARNERS = ["alice", "bob", *(f"learner{i:03d}" for i in range(1, 120))]
CLASS_SIZE = len(CATALOG_LEARNERS) + 3  # dora, eve@example.edu, frank
PAGE = "/services/courses/ds101/"
API = "/services/courses/api/courses/ds101/learners"


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def course_hub(tmp_path_factory):
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    root = tmp_path_factory.mktemp("coursepage")
    (root / "catalog").mkdir()
    (root / "catalog" / "ds101-roster.csv").write_text(
        "username,email,role\ndora,dora@example.edu,learner\n,eve@example.edu,learner\n"
    )
    catalog = write_catalog(
        root / "catalog",
        [
            {
                "id": "ds101",
                "title": "Data analysis with Python",
                "opens": day(-30),
                "closes": day(60),
                "learners": CATALOG_LEARNERS,
                "teachers": ["tina"],
                "rosters": ["ds101-roster.csv"],
            },
            {
                "id": "stat200",
                "title": "Statistical inference",
                "opens": day(-10),
                "closes": day(90),
                "learners": ["alice", "carol"],
                "teachers": ["sam"],
                "assignments": [
                    {
                        "id": "week1",
                        "title": "Week 1",
                        "notebook": Path(write_source(root / "catalog")).name,
                        "due": day(30),
                    }
                ],
            },
        ],
    )
    # the links to the analytics views and the gradebook (those services are not run here:
    # only the links are checked)
    extra = """
        for s in c.JupyterHub.services:
            if s["name"] == "courses":
                s["command"].append("--CoursePages.analytics_url=/services/analytics/")
                s["command"].append("--CoursePages.grading_url=/services/grading/")
        """
    hub = HubProcess(root / "hub", catalog, services=("courses",), extra_config=extra)
    try:
        await hub.start()  # inside: a hub that fails to start still has its proxy stopped
        for name in ("alice", "tina", "sam", "carol"):  # they log in: hub users, groups
            await (await hub.login(name)).aclose()
        bob = await hub.user_token("bob")
        r = await hub.start_server("bob", "ds101", token=bob)
        assert r.status_code in (201, 202), r.text
        # frank: in the course's hub group as the provider's claims would put him, no login
        assert (await hub.api("POST", "/users/frank")).status_code == 201
        r = await hub.api("POST", "/groups/course:ds101:learner/users", json={"users": ["frank"]})
        assert r.status_code == 200, r.text
        yield hub
    finally:
        await hub.shutdown()


async def get(hub, path, token, **params) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as c:
        return await c.get(path, params=params, headers={"Authorization": f"token {token}"})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(course_hub):
    return {u: await course_hub.user_token(u) for u in ("tina", "sam", "alice", "admin")}


# ------------------------------------------------------------------------ the class


async def test_the_teacher_sees_the_whole_class_from_every_source(course_hub, tokens):
    r = await get(course_hub, API, tokens["tina"], per_page=500)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == body["matching"] == CLASS_SIZE
    rows = {row["name"]: row for row in body["learners"]}
    assert rows["alice"]["sources"] == ["catalog"] and rows["alice"]["state"] == "logged_in"
    assert rows["learner042"]["state"] == "new" and rows["learner042"]["last_activity"] is None
    assert rows["dora"]["sources"] == ["roster"] and rows["dora"]["email"] == "dora@example.edu"
    assert rows["eve@example.edu"]["sources"] == ["roster"]
    assert rows["frank"]["sources"] == ["login"] and rows["frank"]["state"] == "new"
    assert "tina" not in rows and "carol" not in rows  # a teacher; another course's learner
    bob = rows["bob"]
    assert bob["state"] == "running" and bob["last_activity"]
    assert bob["server_url"] == "/user/bob/ds101/"
    assert bob["look_url"] == "/user/bob/ds101/lab/workspaces/teacher-tina"
    assert body["counts"] == {"running": 1, "pending": 0, "logged_in": 1, "new": CLASS_SIZE - 2}


async def test_search_sort_and_pages_are_answered_by_the_server(course_hub, tokens):
    tina = tokens["tina"]
    found = (await get(course_hub, API, tina, q="LEARNER01")).json()
    assert [r["name"] for r in found["learners"]] == [f"learner{i:03d}" for i in range(10, 20)]
    assert found["matching"] == 10 and found["total"] == CLASS_SIZE
    first = (await get(course_hub, API, tina)).json()
    assert len(first["learners"]) == 50 and first["pages"] == 3  # never the whole class
    last = (await get(course_hub, API, tina, page=3)).json()
    assert len(last["learners"]) == CLASS_SIZE - 100 and last["links"]["next"] is None
    assert "page=2" in last["links"]["prev"]
    by_state = (await get(course_hub, API, tina, sort="state")).json()["learners"]
    assert [r["name"] for r in by_state[:2]] == ["bob", "alice"]
    recent = (await get(course_hub, API, tina, sort="last_activity", order="desc")).json()
    assert recent["learners"][0]["name"] in ("alice", "bob")
    names = [r["name"] for r in (await get(course_hub, API, tina, order="desc")).json()["learners"]]
    assert names == sorted(names, reverse=True)
    running = (await get(course_hub, API, tina, state="running")).json()
    assert [r["name"] for r in running["learners"]] == ["bob"]


async def test_a_bad_parameter_is_a_400_naming_it(course_hub, tokens):
    r = await get(course_hub, API, tokens["tina"], per_page="9999")
    assert r.status_code == 400
    assert r.json()["error"] == "bad_query" and r.json()["field"] == "per_page"
    assert "per_page must be from 1 to 500" in r.json()["message"]


async def test_the_csv_holds_the_whole_class(course_hub, tokens):
    r = await get(course_hub, "/services/courses/ds101/learners.csv", tokens["tina"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="ds101-learners.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == CLASS_SIZE
    assert {"username": "dora", "email": "dora@example.edu", "sources": "roster",
            "state": "new", "last_activity": ""} in rows  # fmt: skip
    some = await get(course_hub, "/services/courses/ds101/learners.csv", tokens["tina"], q="eve")
    assert [row["username"] for row in csv.DictReader(io.StringIO(some.text))] == [
        "eve@example.edu"
    ]


# ------------------------------------------------------------------------ who may see it


async def test_each_caller_sees_only_the_courses_they_teach(course_hub, tokens):
    async def courses(user):
        r = await get(course_hub, "/services/courses/api/courses", tokens[user])
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["courses"]]

    assert await courses("tina") == ["ds101"]
    assert await courses("sam") == ["stat200"]
    assert await courses("alice") == []
    assert await courses("admin") == ["ds101", "stat200"]  # the admins: every course
    r = await get(course_hub, "/services/courses/api/courses", tokens["sam"])
    links = r.json()["courses"][0]["links"]
    assert links["gradebook"] == "/services/grading/courses/stat200/gradebook"  # assignments
    assert links["analytics"] == "/services/analytics/stat200/"
    r = await get(course_hub, API, tokens["admin"])
    assert r.status_code == 200 and r.json()["total"] == CLASS_SIZE


@pytest.mark.parametrize("who", ["alice", "sam"])
async def test_a_learner_and_another_courses_teacher_are_refused(course_hub, tokens, who):
    for path in (API, "/services/courses/ds101/learners.csv"):
        r = await get(course_hub, path, tokens[who])
        assert r.status_code == 403, (path, r.text)
    r = (await get(course_hub, API, tokens[who])).json()
    assert r["error"] == "not_a_teacher"
    assert "Data analysis with Python (ds101) are shown to its teachers" in r["message"]
    assert f"{who} is neither" in r["message"]


async def test_refusal_pages_speak_in_course_words(course_hub):
    alice = await course_hub.login("alice")
    try:
        r = await alice.get(PAGE)
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/html")
        text = html.unescape(r.text)
        assert "Not a course page of yours" in text
        assert "The learners of Data analysis with Python (ds101)" in text
        r = await alice.get("/services/courses/nosuch101/")
        assert r.status_code == 404 and "There is no course 'nosuch101'" in html.unescape(r.text)
        r = await alice.get("/services/courses/")
        assert r.status_code == 200 and "you teach no course on this hub" in r.text
    finally:
        await alice.aclose()


async def test_a_token_made_for_something_else_is_refused(course_hub, tokens):
    """A token of tina's own, made for the analytics APIs only (another audience), does not
    open the course page; nor does one that opens the service but carries no course scope."""

    async def token_with(scopes):
        r = await course_hub.api(
            "POST", "/users/tina/tokens", json={"scopes": scopes, "note": "audience"}
        )
        assert r.status_code == 201, r.text
        return r.json()["token"]

    analytics_only = await token_with(["custom:analytics:course:ds101"])
    r = await get(course_hub, API, analytics_only)
    assert (
        r.status_code == 403 and "does not allow using the courses service" in r.json()["message"]
    )
    door_only = await token_with(["access:services!service=courses"])
    r = await get(course_hub, API, door_only)
    assert r.status_code == 403 and r.json()["error"] == "not_a_teacher"
    r = await get(course_hub, API, "not-a-token")
    assert r.status_code in (401, 403)
    async with httpx.AsyncClient(base_url=course_hub.url) as anonymous:
        assert (await anonymous.get(API)).status_code == 401
        r = await anonymous.get(PAGE, headers={"Accept": "text/html"})
        assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]


async def test_the_service_runs_with_its_own_role(course_hub):
    """Its scopes (learner groups only, read-only) are checked in test_coursepage_units."""
    r = await course_hub.api("GET", "/services/courses")
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["service-courses"]


# ------------------------------------------------------------------------ the authorization page


async def forget_authorizations(hub, user: str, client_id: str) -> None:
    """Revoke what ``user`` authorized ``client_id`` to do: the hub asks only once while a
    token of that authorization lasts, and another test may have authorized it already."""
    tokens = (await hub.api("GET", f"/users/{user}/tokens")).json()["api_tokens"]
    for token in tokens:
        if token.get("oauth_client") and client_id in str(token.get("oauth_client")):
            r = await hub.api("DELETE", f"/users/{user}/tokens/{token['id']}")
            assert r.status_code == 204, r.text


async def test_the_authorization_page_names_the_learner_and_the_course(course_hub):
    await forget_authorizations(course_hub, "tina", "bob")
    tina = await course_hub.login("tina")
    try:
        r = await tina.get("/user/bob/ds101/lab/workspaces/teacher-tina")
        assert "/hub/api/oauth2/authorize" in str(r.url), r.url
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", r.text)).split())
        assert "Open bob’s ds101 server?" in text
        assert "the server of bob for the course Data analysis with Python (ds101)" in text
        assert "nothing of bob’s other courses" in text
        assert 'href="/services/courses/ds101/"' in r.text  # the course_pages template variable
        fields: dict[str, list[str]] = {}
        for name, value in re.findall(
            r'<input type="hidden" name="([^"]+)" value="([^"]*)"', r.text
        ):
            fields.setdefault(name, []).append(html.unescape(value))
        r = await tina.post(str(r.url), data=fields)
        assert r.status_code == 200 and "/user/bob/ds101/lab/workspaces/teacher-tina" in str(r.url)
    finally:
        await tina.aclose()


async def test_a_learner_opening_their_own_server_is_not_asked(course_hub):
    bob = await course_hub.login("bob")
    try:
        r = await bob.get("/user/bob/ds101/lab")
        assert r.status_code == 200 and "/user/bob/ds101/lab" in str(r.url), r.url
        assert "course-authorize" not in r.text and "Authorize access" not in r.text
    finally:
        await bob.aclose()


# ------------------------------------------------------------------------ in a real browser


@pytest_asyncio.fixture(loop_scope="session")
async def axe_context(browser):
    """Like tests.browser's ``browser_context``, but axe-core may be injected: the course
    pages' Content-Security-Policy allows no script at all (they have none), so this test
    browser is told to bypass it (``bypass_csp``: Playwright's, for this context only)."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC", bypass_csp=True
    )
    try:
        yield context
    finally:
        await context.close()


async def no_serious_violations(page):
    found = serious_violations(await axe(page))
    assert not found, "\n".join(found)


@pytest.mark.slow
async def test_a_teacher_finds_sorts_pages_and_downloads_in_the_browser(axe_context, course_hub):
    page = await axe_context.new_page()
    await login(page, course_hub, "tina")
    await page.goto(f"{course_hub.url}{PAGE}")
    assert await page.title() == "Data analysis with Python (ds101): learners"
    rows = page.locator("#learners tbody tr")
    assert await rows.count() == 50
    assert f"Learners 1 to 50 of {CLASS_SIZE}" in await page.inner_text("#found")
    assert await page.get_attribute("#analytics-link", "href") == "/services/analytics/ds101/"
    assert await page.locator("#gradebook-link").count() == 0  # ds101 has no assignments
    await screenshot(page, "coursepage-tina-ds101")
    await no_serious_violations(page)

    await page.fill("#q", "learner11")
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert await rows.count() == 10
    assert "10 matching “learner11”" in await page.inner_text("#found")
    await screenshot(page, "coursepage-tina-search")

    async with page.expect_navigation():
        await page.click("a.sort[data-sort=name]")  # already by name: now descending
    assert await rows.first.get_attribute("data-learner") == "learner119"
    assert await page.get_attribute("th[aria-sort]", "aria-sort") == "descending"
    async with page.expect_navigation():
        await page.click("text=Show everyone")
    async with page.expect_navigation():
        await page.click("a.sort[data-sort=state]")
    assert await rows.first.get_attribute("data-learner") == "bob"
    assert await rows.first.locator("a.look").get_attribute("href") == (
        "/user/bob/ds101/lab/workspaces/teacher-tina"
    )
    async with page.expect_navigation():
        await page.click("a[rel=next]")
    assert "Page 2 of 3" in await page.inner_text("nav.pager")
    assert "Learners 51 to 100" in await page.inner_text("#found")
    await screenshot(page, "coursepage-tina-page2")
    await no_serious_violations(page)

    async with page.expect_download() as download:
        await page.click("#csv-link")
    path = await (await download.value).path()
    assert len(list(csv.DictReader(open(path)))) == CLASS_SIZE


@pytest.mark.slow
@pytest.mark.parametrize("who", ["alice", "sam"])
async def test_the_browser_shows_the_refusal(axe_context, course_hub, who):
    page = await axe_context.new_page()
    await login(page, course_hub, who)
    response = await page.goto(f"{course_hub.url}{PAGE}")
    assert response.status == 403
    assert "The learners of Data analysis with Python (ds101)" in await page.inner_text("#message")
    await screenshot(page, f"coursepage-refused-{who}")
    await no_serious_violations(page)


@pytest.mark.slow
async def test_the_browser_shows_whose_server_before_opening_it(axe_context, course_hub):
    await forget_authorizations(course_hub, "tina", "bob")
    page = await axe_context.new_page()
    await login(page, course_hub, "tina")
    await page.goto(f"{course_hub.url}{PAGE}?sort=state")
    async with page.expect_navigation():
        await page.click("a.look")
    assert await page.get_attribute("#course-authorize", "data-owner") == "bob"
    assert "Open bob’s ds101 server?" in await page.inner_text("h1")
    assert "Data analysis with Python" in await page.inner_text("#course-authorize")
    await screenshot(page, "coursepage-authorize-bob")
    await no_serious_violations(page)
