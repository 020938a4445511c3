"""The hub's own pages in course words, in a real browser on a real hub (issue 10, item 4).

Each stock page a learner meets (the refusals' 403 and 404, not running, spawn failed, spawn
pending) says which course, why, its dates and what to do next; the home page links each
course a user teaches (and every course, for an admin) to its course page.

Faked: nothing. The hub's clock for the access window is a file the test writes
(``CourseLocalSpawner.now`` and the pages' ``CourseWords`` read the same one), so a course
that closes is a real refusal by the real spawner. ``course_pages`` is set here as the
courses service sets it (that service is another part of the hub, tested on its own).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from tests.browser import axe, login, screenshot, serious_violations
from tests.hubtest import HubProcess

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

COURSE_PAGES = "/services/courses/"


def clock_config(clock_file) -> str:
    """The hub's access-window clock: the date in ``clock_file`` when it exists, else now."""
    return f"""
from datetime import UTC, datetime
from pathlib import Path
from hub_ext.courses import CourseCatalog
from hub_ext.stockpages import CourseWords

def _clock(path=Path({str(clock_file)!r})):
    return datetime.fromisoformat(path.read_text().strip()) if path.exists() else datetime.now(UTC)

c.CourseLocalSpawner.now = _clock
c.JupyterHub.template_vars = {{
    **c.JupyterHub.template_vars,
    "course_pages": {COURSE_PAGES!r},
    "course_words": CourseWords(CourseCatalog.instance().catalog, now=_clock),
}}
"""


#: carol's stat200 takes a few seconds to start, so that its spawn-pending page can be seen
SLOW_START = """
import asyncio

async def _slow_for_carol(spawner):
    if spawner.user.name == "carol":
        await asyncio.sleep(4)

c.Spawner.pre_spawn_hook = _slow_for_carol
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pages_hub(tmp_path_factory, catalog_path):
    workdir = tmp_path_factory.mktemp("pages-hub")
    hub = HubProcess(
        workdir, catalog_path, extra_config=clock_config(workdir / "clock") + SLOW_START
    )
    hub.clock_file = workdir / "clock"
    await hub.start()
    try:
        yield hub
    finally:
        await hub.shutdown()


async def open_page(browser_context, hub, username: str, path: str):
    page = await browser_context.new_page()
    await login(page, hub, username)
    response = await page.goto(f"{hub.url}{path}")
    return page, response


async def check_accessible(page) -> None:
    problems = serious_violations(await axe(page))
    assert not problems, problems


async def visit(browser_context, hub, username: str, path: str, status: int):
    """``username`` opens ``path``: the page and its text, which has none of JupyterHub's
    stock words (the course's words replace them)."""
    page, response = await open_page(browser_context, hub, username, path)
    assert response.status == status
    text = await page.inner_text("body")
    stock_words_absent(text)
    return page, text


async def looked_at(page, name: str) -> None:
    """A screenshot to look at, and axe-core's check."""
    await screenshot(page, name)
    await check_accessible(page)


def stock_words_absent(text: str) -> None:
    for stock in (
        "You can try restarting your server",
        "Relaunch Server",
        "Launch Server",
        "Jupyter has lots of moons",
        "Would you like to",
    ):
        assert stock not in text, (stock, text)


# ------------------------------------------------------------------ home page


async def test_an_admin_sees_every_course_with_its_state_and_course_page(
    browser_context, pages_hub
):
    page, _ = await open_page(browser_context, pages_hub, "admin", "/hub/home")
    text = await page.inner_text("main, body")
    assert "not enrolled in any course" not in text
    rows = page.locator("#course-table tr.course-row")
    ids = [await rows.nth(i).get_attribute("data-server-name") for i in range(await rows.count())]
    assert ids == ["ds101", "stat200", "hist100", "future101", "grace200"]
    states = {i: await rows.nth(n).get_attribute("data-course-status") for n, i in enumerate(ids)}
    assert states == {
        "ds101": "open",
        "stat200": "open",
        "hist100": "closed",
        "future101": "upcoming",
        "grace200": "grace",
    }
    links = await page.locator("a.course-page-link").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    assert links == [f"{COURSE_PAGES}{i}/" for i in ids]
    # not enrolled: the admin cannot start a course server of their own
    assert await page.locator("a.start-server").count() == 0
    await looked_at(page, "stock-home-admin")


async def test_a_teacher_links_to_the_pages_of_the_courses_they_teach_and_no_learner_table(
    browser, browser_context, pages_hub
):
    page, _ = await open_page(browser_context, pages_hub, "tina", "/hub/home")
    links = await page.locator("a.course-page-link").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    assert links == [f"{COURSE_PAGES}{i}/" for i in ("ds101", "hist100", "future101")]
    html = await page.content()
    assert "learner-table" not in html and 'data-learner="' not in html
    await screenshot(page, "stock-home-teacher")

    other = await browser.new_context()
    try:
        learner, _ = await open_page(other, pages_hub, "alice", "/hub/home")
        assert await learner.locator("a.course-page-link").count() == 0
    finally:
        await other.close()


# ------------------------------------------------------------------ refusals: 403, 404


@pytest.mark.parametrize(
    ("username", "course", "status", "why", "next_"),
    [
        (
            "alice",
            "hist100",
            403,
            r"hist100 \(Digital history\) is closed: it was open from \d{4}-\d\d-\d\d to",
            "ask the course's teachers",
        ),
        (
            "alice",
            "future101",
            403,
            r"future101 \(Next term\) is not open yet: it is open from",
            "Come back once it opens",
        ),
        (
            "bob",
            "stat200",
            403,
            r"bob is not enrolled in stat200 \(Statistical inference\)",
            "ask its teacher to enrol you",
        ),
        ("alice", "nosuch", 404, r"There is no course 'nosuch'", "from your home page"),
    ],
    ids=["closed", "not-open-yet", "not-enrolled", "unknown"],
)
async def test_a_refused_start_says_which_course_why_when_and_what_next(
    browser_context, pages_hub, username, course, status, why, next_
):
    page, text = await visit(
        browser_context, pages_hub, username, f"/hub/spawn/{username}/{course}", status
    )
    assert re.search(why, text), text
    assert next_ in text
    if course != "nosuch":
        window = await page.inner_text(".course-window")
        assert re.fullmatch(r"open from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d.*", window), window
        assert await page.locator("h1").inner_text() != f"{status} : Forbidden"
    await looked_at(page, f"stock-refused-{course}")


async def test_another_404_keeps_its_message_and_points_home(browser_context, pages_hub):
    page, text = await visit(browser_context, pages_hub, "alice", "/hub/no-such-page", 404)
    assert "Your courses are on your home page" in text
    await check_accessible(page)


# ------------------------------------------------------------------ not running


async def test_not_running_for_a_closed_course_offers_no_start_and_gives_the_dates(
    browser_context, pages_hub
):
    """``/user/alice/hist100/``: alice has no hist100 server (its refusals leave no record), so
    JupyterHub renders its not-running page for her default server; the page finds the
    course in the URL."""
    page, text = await visit(browser_context, pages_hub, "alice", "/user/alice/hist100/", 424)
    assert "Digital history: alice's server is not running" in text
    assert re.search(r"hist100 \(Digital history\) is closed: it was open from", text), text
    assert re.search(r"open from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d", text)
    assert await page.locator("#start").count() == 0
    assert await page.locator("#home").get_attribute("href") == "/hub/home"
    await looked_at(page, "stock-not-running-closed")


async def test_not_running_for_an_open_course_starts_that_course(browser_context, pages_hub):
    page, text = await visit(browser_context, pages_hub, "bob", "/user/bob/ds101/", 424)
    assert "Data analysis with Python: bob's server is not running" in text
    start = page.locator("#start")
    assert (await start.inner_text()).strip() == "Start Data analysis with Python"
    assert (await start.get_attribute("href")).startswith("/hub/spawn/bob/ds101")
    await looked_at(page, "stock-not-running-open")


# ------------------------------------------------------------------ pending, failed


async def test_spawn_pending_names_the_course_and_its_dates(browser_context, pages_hub):
    page = await browser_context.new_page()
    await login(page, pages_hub, "carol")
    await page.goto(f"{pages_hub.url}/hub/spawn/carol/stat200")
    await page.wait_for_url(re.compile(r"/hub/spawn-pending/carol/stat200"))
    text = await page.inner_text("body")
    assert "Starting Statistical inference" in text
    assert re.search(r"open from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d", text), text
    assert "Your server is starting up" not in text
    await looked_at(page, "stock-spawn-pending")
    await page.wait_for_url(re.compile(r"/user/carol/stat200/"), timeout=90_000)
    await pages_hub.api("DELETE", "/users/carol/servers/stat200")


async def test_spawn_failed_after_the_course_closed_says_why_and_offers_no_relaunch(
    browser_context, pages_hub
):
    """bob's ds101 server ran once (so its record stays); then the course closes (the
    hub's clock moves past its end): the start is refused, and JupyterHub's "spawn failed"
    page says why, with the dates, and offers no relaunch."""
    token = await pages_hub.user_token("bob")
    r = await pages_hub.start_server("bob", "ds101", token=token)
    assert r.status_code in (201, 202), r.text
    await pages_hub.api("DELETE", "/users/bob/servers/ds101")
    for _ in range(100):
        model = (await pages_hub.api("GET", "/users/bob")).json()["servers"].get("ds101")
        if not model:
            break
        await asyncio.sleep(0.2)
    pages_hub.clock_file.write_text((datetime.now(UTC) + timedelta(days=70)).isoformat())
    try:
        page, response = await open_page(browser_context, pages_hub, "bob", "/hub/spawn/bob/ds101")
        assert response.status == 403
        assert "is closed: it was open from" in await page.inner_text("body")
        response = await page.goto(f"{pages_hub.url}/user/bob/ds101/")
        assert "/hub/spawn-pending/bob/ds101" in page.url
        text = await page.inner_text("body")
        assert "Data analysis with Python did not start" in text
        assert re.search(
            r"The last start failed: ds101 \(Data analysis with Python\) is closed: it was "
            r"open from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d",
            text,
        ), text
        assert "ask the course's teachers" in text
        stock_words_absent(text)
        assert "Spawn failed" not in text
        assert await page.locator("#start").count() == 0
        await screenshot(page, "stock-spawn-failed")
        await check_accessible(page)
    finally:
        pages_hub.clock_file.unlink(missing_ok=True)


# ------------------------------------------------------------------ the admin page


async def test_the_admin_starts_a_course_server_and_sees_why_a_start_is_refused(
    browser_context, pages_hub
):
    await pages_hub.user_token("alice")  # alice has logged in once: the hub knows her
    page, _ = await open_page(browser_context, pages_hub, "admin", "/hub/admin")
    result = page.locator("#course-start-result")

    await page.fill("#course-start-user", "alice")
    await page.select_option("#course-start-course", "hist100")
    await page.click("#course-start-form button[type=submit]")
    await page.wait_for_function(
        "document.getElementById('course-start-result').textContent.startsWith('Not started')"
    )
    assert re.search(
        r"Not started: hist100 \(Digital history\) is closed: it was open from \d{4}-\d\d-\d\d",
        await result.inner_text(),
    )
    await screenshot(page, "stock-admin-start-refused")

    await page.select_option("#course-start-course", "ds101")
    await page.click("#course-start-form button[type=submit]")
    await page.wait_for_function(
        "/server is (running|starting)/.test(document.getElementById('course-start-result').textContent)"
    )
    model = await pages_hub.wait_ready("alice", "ds101")
    assert model["ready"]
    problems = [p for p in serious_violations(await axe(page)) if "course-start" in p]
    assert not problems, problems
    await pages_hub.api("DELETE", "/users/alice/servers/ds101")
