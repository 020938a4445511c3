"""A real browser for the pages' tests: Debian's Chromium, headless, driven by Playwright.

Playwright (PyPI) brings only its driver here: the browser is the machine's own
``chromium`` (``apt-get install chromium``), given as ``executable_path``, so no browser is
downloaded. ``axe-core`` (the npm registry, through the committed lockfile) checks each page's
accessibility.

    # the fixtures (browser, browser_context) are loaded for every module by tests/conftest.py

    async def test_page(browser_context, some_hub):
        page = await browser_context.new_page()
        await login(page, some_hub, "tina")
        await page.goto(f"{some_hub.url}/services/courses/ds101/")
        await screenshot(page, "course-page")
        assert not serious_violations(await axe(page))

Screenshots go to ``$HUB_EXT_ARTIFACTS`` (default ``test-artifacts/``, git-ignored), one PNG
per name: test artifacts a person looks at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("HUB_EXT_ARTIFACTS", ROOT / "test-artifacts"))


def chromium_path() -> str | None:
    """The machine's Chromium (``$HUB_EXT_CHROMIUM`` first)."""
    for candidate in (os.environ.get("HUB_EXT_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _unavailable(reason: str):
    """Skip (saying why) on a developer's machine; CI, which installs the browser, fails."""
    if os.environ.get("HUB_EXT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"HUB_EXT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser():
    """One headless Chromium for the session."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (make setup installs it)")
    executable = chromium_path()
    if executable is None:
        _unavailable("no chromium on this machine (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=executable,
            headless=True,
            # root in a container has no user namespace for Chromium's own sandbox
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser_context(browser):
    """A fresh context (no cookies) per test, 1280×900, English, UTC."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC"
    )
    try:
        yield context
    finally:
        await context.close()


async def login(page, hub, username: str, password: str | None = None) -> None:
    """Log in through the hub's own login form (the dev authenticator's), as a person does."""
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password or hub.password)
    async with page.expect_navigation():
        await page.click("input[type=submit], button[type=submit]")


async def screenshot(page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``<artifacts>/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def axe(page, **options) -> list[dict]:
    """axe-core's violations on ``page`` as it is now (each: id, impact, help, nodes)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make setup` (npm ci)")
    # evaluated through the DevTools protocol, not as a script tag: a page's own
    # Content-Security-Policy (ours allow no inline script) does not apply to it
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = await page.evaluate("(options) => axe.run(document, options)", options or {})
    return result["violations"]


def serious_violations(violations: list[dict]) -> list[str]:
    """The violations of impact serious or critical, one readable line each."""
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(n["target"][0] if n.get("target") else "?" for n in v["nodes"][:5])
        for v in violations
        if v.get("impact") in ("serious", "critical")
    ]
