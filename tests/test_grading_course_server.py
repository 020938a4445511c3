"""Handing in from inside a course server, on a real hub wired by ``configure_course_hub``.

The learner's way: in a terminal of their ds101 server, ``python -m hub_ext_assignments``
fetches the exercise into the workspace and hands it in, with the server's own token. The
attack: that token, readable by any code in the server (the learner's, a teacher looking
over the shoulder), carries ds101's submit scope and nothing else: not stat200's, not a
teacher's, not the hub API beyond what a server needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pytest
import pytest_asyncio

from hub_ext.spawners.base import SINGLEUSER_DIR
from tests.analytics_fixtures import wait_until
from tests.grading_fixtures import ANSWERS, EXPECTED, HIDDEN_MARKER, MAX_POINTS
from tests.hubtest import HubProcess, node_available
from tests.test_grading_service_fixtures import grading_catalog, moment

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(tmp_path_factory):
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    root = tmp_path_factory.mktemp("grading-course-server")
    catalog = grading_catalog(
        root / "catalog",
        {
            "ds101": {
                "learners": ["alice"],
                "teachers": ["tina"],
                "assignments": [{"id": "week1", "due": moment(7)}],
            },
            "stat200": {
                "learners": ["alice"],
                "assignments": [{"id": "hw1", "due": moment(7)}],
            },
        },
    )
    hub = HubProcess(
        root / "hub",
        catalog,
        services=("events", "grading"),
        extra_config='c.GradingQueue.idle_seconds = 0.5\nc.Autograder.sandbox = "bubblewrap"\n',
    )
    await hub.start()
    try:
        yield hub
    finally:
        await hub.shutdown()


def server_env(pid: int) -> dict[str, str]:
    """The environment of a course server's process: what its terminal would have."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(item.split("=", 1) for item in raw if "=" in item)


def in_server(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m hub_ext_assignments ARGS`` as the learner runs it in the server."""
    return subprocess.run(
        [sys.executable, "-m", "hub_ext_assignments", *args],
        env=env,
        cwd=env.get("JUPYTERHUB_ROOT_DIR") or None,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def started(hub, user: str, course: str) -> dict[str, str]:
    token = await hub.user_token(user)
    r = await hub.start_server(user, course, token=token)
    assert r.status_code in (201, 202) or "already running" in r.text, r.text
    model = await hub.wait_ready(user, course)
    return server_env(model["state"]["pid"])


async def test_a_learner_fetches_and_hands_in_from_the_course_server(hub):
    env = await started(hub, "alice", "ds101")
    assert env["HUB_EXT_GRADING_URL"].endswith("/services/grading/")
    assert str(SINGLEUSER_DIR) in env["PYTHONPATH"].split(os.pathsep)
    workspace = Path(env["JUPYTERHUB_ROOT_DIR"])

    listed = in_server(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "week1" in listed.stdout

    fetched = in_server(env, "fetch", "week1")
    assert fetched.returncode == 0, fetched.stderr
    path = workspace / "assignments" / "week1.ipynb"
    student = nbformat.read(path, as_version=4)
    assert HIDDEN_MARKER not in path.read_text()  # hidden tests never reach the learner
    # a second fetch keeps the learner's work and writes beside it
    path.write_text(path.read_text())  # (their edits would be here)
    again = in_server(env, "fetch", "week1")
    assert again.returncode == 0 and "earlier copy is kept" in again.stdout
    assert (workspace / "assignments" / "week1 (2).ipynb").exists()

    for cell in student.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ANSWERS["correct"]:
            cell.source = ANSWERS["correct"][gid]
    nbformat.write(student, str(path))
    handed = in_server(env, "submit", "week1")
    assert handed.returncode == 0, handed.stderr
    assert "attempt 1" in handed.stdout

    def graded():
        status = in_server(env, "status", "week1")
        return status.returncode == 0 and " of " in status.stdout and status.stdout

    out = await wait_until(graded, 180, 1, "the submission graded")
    total = sum(EXPECTED["correct"].values())
    assert f"{total:g} of {MAX_POINTS:g} points" in out, out


async def test_the_servers_token_reaches_only_its_own_course(hub):
    env = await started(hub, "alice", "ds101")
    token = env["JUPYTERHUB_API_TOKEN"]
    me = (await hub.api("GET", "/user", token=token)).json()
    grading = {s for s in me["scopes"] if "grading" in s}
    assert grading == {"custom:grading:submit:ds101", "access:services!service=grading"}

    # the ds101 server's token used for stat200, where alice is enrolled too
    other = {**env, "COURSE_ID": "stat200"}
    refused = in_server(other, "fetch", "hw1")
    assert refused.returncode == 1
    assert "custom:grading:submit:stat200" in refused.stderr and "(403)" in refused.stderr
    assert not (Path(env["JUPYTERHUB_ROOT_DIR"]) / "assignments" / "hw1.ipynb").exists()
    # nor a teacher's reads of ds101 (the gradebook)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(
            f"{hub.url}/services/grading/api/courses/ds101/gradebook",
            headers={"Authorization": f"token {token}"},
        )
    assert r.status_code == 403, r.text
    assert "custom:grading:grade:ds101" in r.json()["message"]


async def test_a_teachers_own_server_gets_no_learners_scope(hub):
    env = await started(hub, "tina", "ds101")
    me = (await hub.api("GET", "/user", token=env["JUPYTERHUB_API_TOKEN"])).json()
    assert not {s for s in me["scopes"] if s.startswith("custom:grading")}
    refused = in_server(env, "fetch", "week1")
    assert refused.returncode == 1 and "(403)" in refused.stderr


async def test_outside_a_course_server_the_command_says_why(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(SINGLEUSER_DIR)}
    result = in_server(env, "list")
    assert result.returncode == 1
    assert "not a course server of a hub that grades" in result.stderr
    assert "Traceback" not in result.stderr
