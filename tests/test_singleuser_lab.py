"""Inside a course server (issue 10, items 3 and 5): JupyterLab names the course and whose
workspace it is, and a save into the read-only materials says so in one sentence.

Real hub, real course servers (local backend, materials bind-mounted read-only in a
private mount namespace), real JupyterLab in Debian's Chromium. Nothing is faked.
"""

from __future__ import annotations

import httpx
import pytest

from tests.browser import login, screenshot

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

BANNER_JS = "getComputedStyle(document.querySelector('#jp-top-bar'), '::before').content"


async def running(hub, username: str, course: str) -> str:
    """Start ``username``'s ``course`` server (if it is not running); their API token."""
    token = await hub.user_token(username)
    r = await hub.start_server(username, course, token=token)
    assert r.status_code in (201, 202, 400), r.text  # 400: already running
    await hub.wait_ready(username, course)
    return token


async def contents(hub, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=f"{hub.url}/user/alice/ds101/api/contents/",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ) as c:
        return await c.request(method, path, **kwargs)


def one_friendly_sentence(response: httpx.Response, path: str, workspace) -> str:
    assert response.status_code == 403, response.text
    message = response.json()["message"]
    assert message.startswith("Cannot ") and path in message, message
    assert "the folder materials/ is read-only" in message, message
    assert "Errno" not in message and str(workspace) not in message and "/tmp/" not in message
    assert message.count(". ") == 0 and message.endswith("."), message  # one sentence
    return message


async def test_a_save_into_the_materials_is_refused_in_one_sentence_without_a_server_path(hub):
    token = await running(hub, "alice", "ds101")
    workspace = hub.workdir / "workspaces" / "ds101" / "alice"
    notebook = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}  # fmt: skip
    r = await contents(hub, token, "PUT", "materials/mine.ipynb", json=notebook)
    one_friendly_sentence(r, "materials/mine.ipynb", workspace)
    r = await contents(hub, token, "PUT", "materials/notes.txt", json={"type": "file", "format": "text", "content": "x"})  # fmt: skip
    one_friendly_sentence(r, "materials/notes.txt", workspace)
    r = await contents(hub, token, "POST", "materials", json={"type": "file"})  # New File there
    one_friendly_sentence(r, "materials", workspace)
    r = await contents(hub, token, "DELETE", "materials/README.md")
    one_friendly_sentence(r, "materials/README.md", workspace)
    r = await contents(hub, token, "PATCH", "materials/README.md", json={"path": "README.md"})
    one_friendly_sentence(r, "materials/README.md", workspace)
    # the materials are still there, and the rest of the workspace takes saves
    r = await contents(hub, token, "GET", "materials/README.md")
    assert r.status_code == 200 and "Read-only course materials" in r.json()["content"]
    r = await contents(hub, token, "PUT", "mine.ipynb", json=notebook)
    assert r.status_code == 201, r.text


async def alices_lab(browser_context, hub, visitor: str):
    """``visitor`` opens alice's ds101 JupyterLab (authorizing once, as JupyterHub asks for
    another's server) and waits for its title; the page and its banner's text."""
    await running(hub, "alice", "ds101")
    page = await browser_context.new_page()
    await login(page, hub, visitor)
    await page.goto(f"{hub.url}/user/alice/ds101/lab")
    if "/hub/api/oauth2/authorize" in page.url:
        async with page.expect_navigation():
            await page.click("input[type=submit], button[type=submit]")
    await page.wait_for_selector("#jp-top-bar", timeout=60_000)
    await page.wait_for_function(
        "document.title.includes('Data analysis with Python (alice)')", timeout=30_000
    )
    return page, await page.evaluate(BANNER_JS)


async def test_jupyterlab_names_the_course_and_the_learner_in_the_tab_and_a_banner(
    browser_context, hub
):
    page, banner = await alices_lab(browser_context, hub, "alice")
    assert banner == '"alice\'s workspace \u00b7 Data analysis with Python (ds101)"', banner
    box = await page.evaluate(
        "(() => { const r = document.querySelector('#jp-top-bar').getBoundingClientRect();"
        " return [r.width, r.height]; })()"
    )
    assert box[0] > 200 and box[1] > 10, box  # the bar (and its banner) is on screen
    await screenshot(page, "lab-learner-banner")


async def test_a_teacher_looking_over_the_shoulder_is_told_whose_workspace_it_is(
    browser_context, hub
):
    page, banner = await alices_lab(browser_context, hub, "tina")
    assert banner == (
        '"You are looking at alice\'s workspace \u00b7 Data analysis with Python (ds101)"'
    ), banner
    await screenshot(page, "lab-teacher-over-the-shoulder")


async def test_a_new_file_in_the_materials_in_jupyterlab_shows_the_one_sentence(
    browser_context, hub
):
    """In JupyterLab itself: alice, in materials/, asks for File > New > Text File. (Saving an
    existing material JupyterLab refuses by itself: the file is not writable.) The dialog
    holds the sentence, not the server's path nor the errno."""
    await running(hub, "alice", "ds101")
    page = await browser_context.new_page()
    await login(page, hub, "alice")
    await page.goto(f"{hub.url}/user/alice/ds101/lab/tree/materials")
    await page.locator(".jp-DirListing-item", has_text="README.md").wait_for(timeout=60_000)
    await page.click("#jp-MainMenu .lm-MenuBar-itemLabel:text-is('File')")
    await page.hover(".lm-Menu-itemLabel:text-is('New')")
    await page.click(".lm-Menu-itemLabel:text-is('Text File')")
    dialog = page.locator(".jp-Dialog")
    await dialog.wait_for(timeout=30_000)
    text = await dialog.inner_text()
    assert "the folder materials/ is read-only" in text, text
    assert "Errno" not in text and str(hub.workdir) not in text, text
    await screenshot(page, "lab-read-only-new-file")
