"""A teacher's day, in a real browser, on the repository's own catalog (``hub_config/courses.yaml``)
with the shipped notebooks over OULAD: the acceptance path of the course pages and the
analytics that show themselves, from the home page to a drawn chart.

tina logs in, follows her home page's link to ds101's course page, finds bob by search, goes
to the OULAD course's page and its analytics, and draws the shipped heat-map and a learner's
profile: each chart is an SVG with as many marks as the API's answer has data points. A
learner and another course's teacher are refused those pages. Screenshots are written to
``test-artifacts/journey-*.png``. OULAD: Kuzilek, Hlosta, Zdrahal (2017), Scientific Data
4:170171, CC BY 4.0.
"""

from __future__ import annotations

import shutil

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from tests.analytics_fixtures import wait_until
from tests.browser import axe, login, screenshot, serious_violations
from tests.events_fixtures import oulad_store  # noqa: F401 (fixture)
from tests.hubtest import REPO, HubProcess, node_available

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

OULAD_COURSE = "aaa-2013j"
LEARNER = "28400"  # a learner of AAA 2013J with clicks in the head of the click table


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def journey_hub(tmp_path_factory, oulad_store):  # noqa: F811
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    workdir = tmp_path_factory.mktemp("journey")
    # the hub's event store is the OULAD import (a copy: the session's store stays as it is)
    shutil.copy(make_url(oulad_store.url).database, workdir / "events.sqlite")
    hub = HubProcess(
        workdir,
        REPO / "hub_config" / "courses.yaml",
        services=("events", "analytics", "courses"),
        admin_users=("admin",),
    )
    try:
        await hub.start()
        yield hub
    finally:
        await hub.shutdown()


async def _token(hub, user: str) -> str:
    return await hub.user_token(user)


async def _json(hub, token: str, path: str) -> dict:
    async with httpx.AsyncClient(timeout=120) as c:
        r = await c.get(f"{hub.url}{path}", headers={"Authorization": f"token {token}"})
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r.json()


async def _draw(page, path: str, fill: dict | None = None):
    """Submit the form of route ``path`` on an analytics page; its drawn figure."""
    form = page.locator(f'form.route-form[data-path="{path}"]').first
    for name, value in (fill or {}).items():
        await form.locator(f"[name={name}]").fill(value)
    answer = page.locator("#" + await form.get_attribute("data-answer"))
    await form.locator("button[type=submit]").click()
    figure = answer.locator("figure.chart[data-drawn]")
    await figure.wait_for(timeout=120_000)
    return figure


async def test_a_teacher_goes_from_home_to_a_drawn_heatmap_and_profile(
    journey_hub, browser_context
):
    hub = journey_hub
    page = await browser_context.new_page()
    await login(page, hub, "tina")
    await screenshot(page, "journey-home-tina")

    # the home page links each taught course to its course page
    await page.click('a.course-page-link[href$="/services/courses/ds101/"]')
    await page.wait_for_url("**/services/courses/ds101/**")
    await page.fill("#q", "bob")
    async with page.expect_navigation():
        await page.press("#q", "Enter")
    rows = page.locator("table tbody tr")
    assert await rows.count() == 1 and "bob" in await rows.first.inner_text()
    await screenshot(page, "journey-course-page-search")

    # the OULAD course's page links to its analytics, which list every shipped notebook
    await page.goto(f"{hub.url}/services/courses/{OULAD_COURSE}/")
    async with page.expect_navigation():
        await page.click("#analytics-link")
    await page.wait_for_selector("html[data-ready=true]")
    await screenshot(page, "journey-analytics-starting")  # "This API is starting." at first
    token = await _token(hub, "tina")
    base = f"/services/analytics/{OULAD_COURSE}"

    async def running():
        apis = (await _json(hub, token, f"{base}/"))["apis"]
        return len(apis) == 4 and all(a["state"] == "running" for a in apis)

    # each gateway starts over its course's extract of the store (built at first publish)
    await wait_until(running, 300, 1.0, f"{OULAD_COURSE}'s shipped APIs running")
    await page.reload()
    await page.wait_for_selector("html[data-ready=true]")
    for api in ("course-overview", "know-thy-student", "resource-heatmap"):
        assert await page.locator(f"[id='{api}'], a[href*='/{api}/']").count() >= 1, api

    # the heat-map: one rect per (resource, week) cell the API answered
    figure = await _draw(page, "/charts/heatmap")
    spec = await _json(hub, token, f"{base}/resource-heatmap/charts/heatmap")
    cells = len(spec["data"]["values"])
    assert cells > 10
    assert await figure.locator("svg g.mark-rect.role-mark > path").count() == cells
    await screenshot(page, "journey-heatmap")

    # a learner's profile: clicks per week, completion by week (planned, opened and
    # completed per week: three bars each), assessments
    figure = await _draw(page, "/charts/learners/:learner", {"learner": LEARNER})
    spec = await _json(hub, token, f"{base}/know-thy-student/charts/learners/{LEARNER}")
    parts = [p["data"]["values"] for p in spec["vconcat"]]
    weeks, completion, assessed = parts
    assert weeks and assessed
    bars = await figure.locator("svg g.mark-rect.role-mark > path").count()
    assert bars == len(weeks) + 3 * len(completion) + len(assessed)
    await screenshot(page, "journey-profile")
    found = serious_violations(await axe(page))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("user", ["alice", "sam"])
async def test_a_learner_and_another_courses_teacher_are_refused(
    journey_hub, browser_context, user
):
    """alice learns ds101; sam teaches stat200 only: neither sees the OULAD course's page
    nor its analytics, and nothing of it shows on the refusal."""
    page = await browser_context.new_page()
    await login(page, journey_hub, user)
    for path in (f"/services/courses/{OULAD_COURSE}/", f"/services/analytics/{OULAD_COURSE}/"):
        response = await page.goto(f"{journey_hub.url}{path}")
        assert response.status == 403, (user, path, response.status)
        assert "route-form" not in await page.content()
    await screenshot(page, f"journey-refused-{user}")
