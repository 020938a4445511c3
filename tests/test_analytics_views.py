"""The analytics pages (``/services/analytics/<course>/`` and ``/<course>/<api>/``) behind a
real JupyterHub and proxy, real kernel gateways, and Debian's Chromium.

ds101 publishes ``views`` (tests/notebooks/views.ipynb: a Vega-Lite chart, records, an
object, documented like the shipped notebooks) and ``know`` (trivial.ipynb: undocumented);
tina teaches ds101, sam stat200, alice is a ds101 learner. What is checked: the pages and
their JSON for programs, the API's own URL (it was a 404), the one error shape for a
notebook's errors, every refusal (a learner, another course's teacher, a token without the
course's scope, nobody), and in the browser: a chart drawn with one mark per data point, a
table that sorts, a definition list, the JSON toggle, no policy violation, axe-core.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from hub_ext.services.analytics.app import CHART_LIBS, PAGE_CSP, STATIC
from tests.analytics_fixtures import (
    add_events,
    analytics_catalog,
    analytics_hub_config,
    make_store,
    wait_until,
)
from tests.browser import axe, login, screenshot, serious_violations
from tests.hubtest import HubProcess, free_port, node_available

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PREFIX = "/services/analytics"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends
EVENTS = [
    ("alice", "viewed", "2026-10-01 10:00:00"),
    ("alice", "answered", "2026-10-01 10:05:00"),
    ("alice", "viewed", "2026-10-02 09:00:00"),
    ("bob", "viewed", "2026-10-01 11:00:00"),
    ("bob", "viewed", "2026-10-03 11:00:00"),
]


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def views_catalog(directory):
    return analytics_catalog(directory, notebooks=("views",), learners=("alice", "bob"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(tmp_path_factory):
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    missing = [f for f in CHART_LIBS if not (STATIC / f).is_file()]
    if missing:
        pytest.fail(f"the chart libraries are not in {STATIC} ({missing}): run `make setup`")
    root = tmp_path_factory.mktemp("analytics-views")
    events = make_store(root / "events.db")
    add_events(events, EVENTS)
    add_events(events, [("carol", "viewed", "2026-10-01 11:00:00")], course="stat200")
    catalog = views_catalog(root / "catalog")
    hub = HubProcess(
        root / "hub",
        catalog,
        extra_config=analytics_hub_config(catalog, root / "runtime", events, free_port()),
    )
    await hub.start()
    try:
        tokens = {u: await hub.user_token(u) for u in ("tina", "sam", "alice", "admin")}
        # tina's token with the service's access scope but not ds101's analytics scope
        r = await hub.api(
            "POST",
            "/users/tina/tokens",
            json={"note": "narrow", "scopes": ["access:services!service=analytics"]},
        )
        tokens["narrow"] = r.json()["token"]
        ns = type("Env", (), {"hub": hub, "tokens": tokens, "root": root})

        async def running():
            r = await call(ns, "tina", "/ds101/")
            apis = r.json().get("apis", []) if r.status_code == 200 else []
            return {a["name"]: a["state"] for a in apis} == {"know": "running", "views": "running"}

        await wait_until(running, 120, 0.5, "ds101's APIs running")
        yield ns
    finally:
        await hub.shutdown()


async def call(env, user, path, **kwargs) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))  # never the caller's dict (HTML is shared)
    if user:
        headers["Authorization"] = f"token {env.tokens[user]}"
    async with httpx.AsyncClient(timeout=60) as c:
        return await c.get(f"{env.hub.url}{PREFIX}{path}", headers=headers, **kwargs)


# ---------------------------------------------------------------------- for programs


async def test_the_course_and_api_urls_answer_json_with_documented_parameters(env):
    r = await call(env, "tina", "/ds101/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["course"] == "ds101" and body["title"] == "Data analysis with Python"
    views = {a["name"]: a for a in body["apis"]}["views"]
    assert views["title"] == "Activity views"
    routes = {(x["verb"], x["path"]): x for x in views["routes"]}
    (measure,) = routes[("GET", "/heatmap")]["params"]
    assert measure["input"] == "select" and measure["choices"] == ["events", "verbs"]
    assert measure["default"] == "events" and not measure["required"]
    learner, since = routes[("GET", "/learners/:learner")]["params"]
    assert (learner["name"], learner["in"], learner["required"]) == ("learner", "path", True)
    assert (since["name"], since["in"], since["input"]) == ("since", "query", "date")

    # every `url` of the catalog answers (it was 404 "API ... has no route /")
    catalog = (await call(env, "tina", "/_api/catalog")).json()
    for api in catalog["apis"]:
        r = await call(env, "tina", api["url"].removeprefix(PREFIX))
        assert r.status_code == 200, (api["url"], r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["name"] == api["name"] and r.json()["routes"]
    # an undocumented notebook: its path parameters are still there
    know = (await call(env, "tina", "/ds101/know/")).json()
    (learner,) = {r["path"]: r for r in know["routes"]}["/learners/:id"]["params"]
    assert (learner["name"], learner["in"], learner["required"]) == ("id", "path", True)


async def test_route_answers_stay_json_for_every_caller(env):
    """The pages fetch the same URLs programs call: a browser's Accept does not change them."""
    for headers in ({}, HTML, {"Accept": "application/json"}):
        r = await call(env, "tina", "/ds101/views/learners", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert [x["learner"] for x in r.json()] == ["alice", "bob"]
    spec = (await call(env, "tina", "/ds101/views/heatmap")).json()
    assert "vega-lite/v5" in spec["$schema"] and len(spec["data"]["values"]) == 4


async def test_a_notebooks_errors_come_in_the_one_shape(env):
    r = await call(env, "tina", "/ds101/views/learners/nobody")
    assert r.status_code == 404
    body = r.json()
    assert set(body) >= {"error", "message", "request_id"}, body
    assert body["error"] == "not_found" and body["message"]
    assert body["request_id"] == r.headers["x-request-id"]
    r = await call(env, "tina", "/ds101/views/learners/alice", params={"since": "2026-13-01"})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "bad_parameter" and body["parameter"] == "since", body
    assert body["request_id"] == r.headers["x-request-id"]
    # a browser that opens the route gets a page that says the same
    r = await call(env, "tina", "/ds101/views/learners/nobody", headers=HTML)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert body["request_id"] not in r.text and r.headers["x-request-id"] in r.text
    assert "not found" in r.text.lower()


async def test_no_input_gives_a_500(env):
    # (a path that is not valid percent-encoding, /learners/%ff, never reaches the service:
    # configurable-http-proxy answers it 500 "URI malformed" itself)
    paths = [
        "/ds101/views/learners/caf%C3%A9%00",
        "/ds101/views/learners/alice?since=" + "9" * 5000,
        "/ds101/views/heatmap?measure=%00",
        "/ds101/views//",
        "/ds101/nothing-here/",
        "/DS101/",
        "/ds101/views/learners/alice/extra",
        "/nope/",
        "/_static/../app.py",
        "/_static/%2e%2e/app.py",
    ]
    for path in paths:
        for headers in ({}, HTML, {"Accept": "text/html;q=abc, application/json;q="}):
            r = await call(env, "tina", path, headers=headers)
            assert r.status_code < 500, (path, headers, r.status_code, r.text[:300])
            assert "Traceback" not in r.text
            if r.headers.get("content-type", "").startswith("application/json"):
                assert set(r.json()) >= {"error", "message", "request_id"} or r.status_code < 400


async def test_error_pages_escape_what_they_quote(env):
    r = await call(env, "tina", "/ds101/views/%3Cscript%3Ealert(1)%3C/script%3E", headers=HTML)
    assert r.status_code == 404
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)" in r.text


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize("user", ["alice", "sam", "narrow"])
@pytest.mark.parametrize(
    "path", ["/ds101/", "/ds101/views/", "/ds101/views/learners", "/ds101/views/learners/alice"]
)
async def test_others_are_refused_the_pages_and_their_json(env, user, path):
    """A learner, another course's teacher, and a token of a teacher without the course's
    analytics scope (one made for something else, or stolen from it)."""
    for headers in ({}, HTML):
        r = await call(env, user, path, headers=headers)
        assert r.status_code == 403, (user, path, r.status_code)
        if headers:
            assert r.headers["content-type"].startswith("text/html")
            assert "You may not see this page" in r.text
            assert "Activity views" not in r.text and "alice" not in r.text.replace(user, "")
        else:
            assert set(r.json()) >= {"error", "message", "request_id"}


async def test_nobody_is_sent_to_log_in(env):
    r = await call(env, None, "/ds101/")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{env.hub.url}{PREFIX}/ds101/", headers=HTML)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]


async def test_an_unknown_course_is_refused_as_one_not_yours(env):
    unknown, other = await call(env, "tina", "/nope/"), await call(env, "tina", "/stat200/")
    assert unknown.status_code == other.status_code == 403
    assert unknown.json()["error"] == other.json()["error"] == "forbidden"
    # an admin sees every course's page
    assert (await call(env, "admin", "/stat200/")).json()["apis"] == []


# ---------------------------------------------------------------------- pages


async def test_the_page_and_its_static_files(env):
    client = await env.hub.login("tina")
    try:
        r = await client.get(f"{PREFIX}/ds101/", headers=HTML)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == PAGE_CSP
        assert "'unsafe-eval'" not in PAGE_CSP and "'unsafe-inline'" not in PAGE_CSP
        page = r.text
        assert "Analytics: Data analysis with Python" in page
        assert 'data-path="/learners/:learner"' in page and 'name="learner"' in page
        scripts = [
            line.split('src="', 1)[1].split('"', 1)[0]
            for line in page.splitlines()
            if "<script" in line
        ]
        assert len(scripts) == len(CHART_LIBS) + 1
        for src in scripts:
            s = await client.get(src)
            assert s.status_code == 200, src
            assert s.headers["x-content-type-options"] == "nosniff"
            assert "javascript" in s.headers["content-type"]
        assert "vega.min.js" in " ".join(scripts)  # from the hub, not a CDN
        assert all(src.startswith(f"{PREFIX}/_static/") for src in scripts)
        r = await client.get(f"{PREFIX}/ds101/views/", headers=HTML)
        assert r.status_code == 200 and "<h1>Activity views</h1>" in r.text
        assert "GET /learners" in r.text and "GET /hello" not in r.text  # one API
    finally:
        await client.aclose()


# ---------------------------------------------------------------------- in a real browser


def policy_violations(page) -> list[str]:
    """Collect the page's console errors (a blocked script or style is one)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.append(f"uncaught: {e}"))
    return seen


async def open_route(page, path: str):
    """The form of ``path`` on the page and its answer's box."""
    form = page.locator(f'form.route-form[data-path="{path}"]').first
    answer = page.locator("#" + await form.get_attribute("data-answer"))
    return form, answer


async def test_a_teacher_sees_a_chart_a_table_and_a_record(env, browser_context):
    page = await browser_context.new_page()
    errors = policy_violations(page)
    await login(page, env.hub, "tina")
    await page.goto(f"{env.hub.url}{PREFIX}/ds101/")
    await page.wait_for_selector("html[data-ready=true]")
    await screenshot(page, "analytics-course-page")

    # the chart: one rect per data point the API answered, drawn as SVG
    form, answer = await open_route(page, "/heatmap")
    await form.locator("button[type=submit]").click()
    await answer.locator("figure.chart[data-drawn]").wait_for()
    spec = (await call(env, "tina", "/ds101/views/heatmap")).json()
    marks = answer.locator("figure.chart svg g.mark-rect.role-mark path")
    assert await marks.count() == len(spec["data"]["values"]) == 4
    assert await answer.locator("canvas").count() == 0  # the SVG renderer
    assert "A chart of 4 data points" in await answer.inner_text()
    # another measure: the form's select goes in the query
    await form.locator("select[name=measure]").select_option("verbs")
    await form.locator("button[type=submit]").click()
    await answer.locator("figure.chart[data-drawn]").wait_for()
    assert "verbs per learner and day" in (
        await answer.locator("figure.chart").get_attribute("aria-label")
    )

    # the records: a table that sorts by a click on a column
    form, answer = await open_route(page, "/learners")
    await form.locator("button[type=submit]").click()
    table = answer.locator("table.records")
    await table.wait_for()
    first_column = table.locator("tbody tr td:first-child")
    assert await first_column.all_inner_texts() == ["alice", "bob"]
    header = table.locator("th", has_text="events")
    await header.locator("button").click()
    assert await header.get_attribute("aria-sort") == "ascending"
    assert await first_column.all_inner_texts() == ["bob", "alice"]  # 2 events, then 3
    await header.locator("button").click()
    assert await header.get_attribute("aria-sort") == "descending"
    assert await first_column.all_inner_texts() == ["alice", "bob"]

    # the object: a definition list, its list of records a table; the JSON one click away
    form, answer = await open_route(page, "/learners/:learner")
    await form.locator("input[name=learner]").fill("alice")
    await form.locator("button[type=submit]").click()
    fields = answer.locator("dl.fields").first
    await fields.wait_for()
    assert await fields.locator(":scope > dt").all_inner_texts() == [
        "learner",
        "events",
        "verbs",
        "days",
    ]
    assert await fields.locator(":scope > dd").nth(1).inner_text() == "3"
    assert await fields.locator("table.records tbody tr").count() == 2  # alice's two days
    toggle = answer.locator("button.json-toggle")
    pre = answer.locator("pre.json")
    assert not await pre.is_visible()
    await toggle.click()
    assert await toggle.get_attribute("aria-expanded") == "true" and await pre.is_visible()
    want = (await call(env, "tina", "/ds101/views/learners/alice")).json()
    assert json.loads(await pre.inner_text()) == want
    await screenshot(page, "analytics-views-drawn")
    assert not serious_violations(await axe(page))

    assert not errors, errors  # no blocked script or style, no uncaught error

    # a learner without events: the one error, readable, with its request id
    await form.locator("input[name=learner]").fill("nobody")
    await form.locator("button[type=submit]").click()
    alert = answer.locator("[role=alert]")
    await alert.wait_for()
    text = await alert.inner_text()
    assert "Not found." in text and "HTTP 404 (not_found)" in text and "request " in text
    await screenshot(page, "analytics-unknown-learner")
    # the only console error now is the browser's note of that 404 answer
    assert [e for e in errors if "status of 404" not in e] == [], errors


async def test_the_api_page_in_a_browser(env, browser_context):
    page = await browser_context.new_page()
    errors = policy_violations(page)
    await login(page, env.hub, "tina")
    await page.goto(f"{env.hub.url}{PREFIX}/ds101/views/")
    await page.wait_for_selector("html[data-ready=true]")
    assert await page.locator("h1").inner_text() == "Activity views"
    form, answer = await open_route(page, "/heatmap")
    await form.locator("button[type=submit]").click()
    await answer.locator("figure.chart[data-drawn]").wait_for()
    await screenshot(page, "analytics-api-page")
    assert not serious_violations(await axe(page))
    assert not errors, errors


async def test_the_front_page_lists_the_callers_courses_and_their_apis(env, browser_context):
    page = await browser_context.new_page()
    await login(page, env.hub, "tina")
    response = await page.goto(f"{env.hub.url}{PREFIX}/")
    assert response.status == 200 and "text/html" in response.headers["content-type"]
    assert await page.locator("h1").inner_text() == "Analytics"
    await page.locator(f'a[href="{PREFIX}/ds101/"]').wait_for()
    assert await page.locator(f'a[href="{PREFIX}/ds101/views/"]').count() == 1
    assert await page.locator(f'a[href^="{PREFIX}/stat200/"]').count() == 0  # sam's course
    await screenshot(page, "analytics-front-page")
    assert not serious_violations(await axe(page))
    await page.locator(f'a[href="{PREFIX}/ds101/"]').click()
    await page.wait_for_selector("html[data-ready=true]")
    assert "Analytics: Data analysis with Python" in await page.locator("h1").inner_text()
    # a program still gets the JSON list
    r = await call(env, "tina", "/")
    assert r.status_code == 200 and {a["name"] for a in r.json()["apis"]} >= {"views"}


@pytest.mark.parametrize("user", ["alice", "sam"])
async def test_others_are_refused_in_a_browser(env, browser_context, user):
    page = await browser_context.new_page()
    await login(page, env.hub, user)
    for path in ("/ds101/", "/ds101/views/"):
        response = await page.goto(f"{env.hub.url}{PREFIX}{path}")
        assert response.status == 403
        # a learner is refused by the hub's own OAuth step (no access to the service), a
        # teacher of another course by the service's page
        assert await page.locator("h1").inner_text() in (
            "You may not see this page",
            "403 : You do not have permission to access JupyterHub service analytics",
        )
        assert await page.locator("form.route-form").count() == 0
    await screenshot(page, f"analytics-refused-{user}")
    assert not serious_violations(await axe(page))
