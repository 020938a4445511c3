"""The browser harness itself: Debian's Chromium logs in to a real hub and axe-core runs.

The pages' own tests (course pages, analytics views, the hub's pages in course words) use
the same fixtures from :mod:`tests.browser`.
"""

from __future__ import annotations

import pytest

from tests.browser import axe, login, screenshot

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_a_learner_logs_in_and_sees_their_courses(browser_context, hub):
    page = await browser_context.new_page()
    await login(page, hub, "alice")
    assert page.url.endswith("/hub/home"), page.url
    rows = page.locator("#course-table tr.course-row")
    assert await rows.count() >= 2  # alice is in ds101 and stat200
    assert "Data analysis with Python" in await page.inner_text("#course-table")
    path = await screenshot(page, "harness-home-alice")
    assert path.stat().st_size > 1000


async def test_a_wrong_password_stays_on_the_login_page(browser_context, hub):
    page = await browser_context.new_page()
    await login(page, hub, "alice", password="not-the-password")
    assert "/hub/login" in page.url
    assert "Invalid username or password" in await page.content()


async def test_axe_reports_violations_of_a_page_that_has_them(browser_context, hub):
    """axe-core really runs: a page with an image without alt text and an unlabeled input
    has violations (so that an empty list from a real page means something)."""
    page = await browser_context.new_page()
    await page.set_content('<html><body><img src="x.png"><input type="text"></body></html>')
    ids = {v["id"] for v in await axe(page)}
    assert {"image-alt", "label"} <= ids, ids
