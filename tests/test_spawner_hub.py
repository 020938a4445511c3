"""The course spawner on a real JupyterHub, its real proxy and real single-user servers."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from jupyterhub_idle_culler import cull_idle
from traitlets.config.loader import PyFileConfigLoader

from hub_ext.services.culling import CONFIG_FILE, TIMEOUTS_ENV
from tests.hubtest import HubProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def server_get(hub, user, server, path, token, **kwargs):
    """A request through the proxy to ``/user/<user>/<server>/<path>``."""
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.get(
            f"{hub.url}/user/{user}/{server}/{path}",
            headers={"Authorization": f"token {token}"},
            **kwargs,
        )


async def server_put(hub, user, server, path, token, body):
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.put(
            f"{hub.url}/user/{user}/{server}/{path}",
            headers={"Authorization": f"token {token}"},
            json=body,
        )


def text_file(content: str) -> dict:
    return {"type": "file", "format": "text", "content": content}


async def server_state(hub, user, server) -> dict:
    r = await hub.api("GET", f"/users/{user}", params={"include_stopped_servers": "1"})
    return r.json()["servers"][server]


async def test_learner_sees_and_starts_both_open_courses(hub):
    token = await hub.user_token("alice")
    home = await hub.page("alice", "/hub/home")
    assert home.status_code == 200
    for title in (
        "Data analysis with Python",
        "Statistical inference",
        "Digital history",
        "Next term",
    ):
        assert title in home.text
    r = await hub.api("GET", "/users/alice")
    assert set(r.json()["groups"]) >= {"course:ds101:learner", "course:stat200:learner"}

    for course in ("ds101", "stat200"):
        r = await hub.start_server("alice", course, token=token)
        assert r.status_code in (201, 202), r.text
        status = await server_get(hub, "alice", course, "api/status", token)
        assert status.status_code == 200, status.text
        assert "kernels" in status.json()

    # each server is its course's: COURSE_ID and the course's env reach the process
    for course, expected in (
        ("ds101", {"COURSE_ID": "ds101", "DATASET_DIR": "/srv/data", "MEM_LIMIT": str(1024**3)}),
        ("stat200", {"COURSE_ID": "stat200"}),
    ):
        pid = (await server_state(hub, "alice", course))["state"]["pid"]
        env = dict(
            item.split("=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
            if "=" in item
        )
        assert {k: env.get(k) for k in expected} == expected
        assert env["JUPYTERHUB_ROOT_DIR"].endswith(f"workspaces/{course}/alice")


async def test_idle_timeouts_per_course_and_hub_wide_culler(hub, monkeypatch):
    token = await hub.user_token("bob")
    await hub.start_server("bob", "ds101", token=token)
    pid = (await server_state(hub, "bob", "ds101"))["state"]["pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert "--ServerApp.shutdown_no_activity_timeout=5400" in cmdline
    assert "--MappingKernelManager.cull_idle_timeout=5400" in cmdline
    # the culler runs as a hub service, at the longest course timeout, with only its scopes
    services = (await hub.api("GET", "/services")).json()
    assert "idle-culler" in services
    culler = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _is_service_of(p, "jupyterhub_idle_culler", hub)
    ]
    assert culler, "no idle-culler process for this hub"
    assert "--timeout=5400" in (culler[0] / "cmdline").read_bytes().decode().split("\0")
    environ = dict(
        e.split("=", 1)
        for e in (culler[0] / "environ").read_bytes().decode().split("\0")
        if "=" in e
    )
    me = (await hub.api("GET", "/user", token=environ["JUPYTERHUB_API_TOKEN"])).json()
    granted = {
        scope
        for scope in me["scopes"]
        if not scope.startswith(("read:services!service=", "access:services!service="))
    }
    assert granted == {
        "delete:servers",
        "list:users",
        "read:servers",
        "read:users:activity",
        "read:users:name",
    }, granted
    await hub.api("DELETE", "/users/bob/servers/ds101")

    # ... and culls each course's servers after that course's own timeout
    assert json.loads(environ[TIMEOUTS_ENV]) == {"ds101": 5400, "stat200": 1800}
    assert f"--config={CONFIG_FILE}" in (culler[0] / "cmdline").read_bytes().decode().split("\0")
    alice = await hub.user_token("alice")
    for course in ("ds101", "stat200"):  # (an earlier test may have left them running)
        r = await hub.start_server("alice", course, token=alice)
        assert r.status_code in (201, 202) or "already running" in r.text, r.text
    await asyncio.sleep(2)  # both idle for 2 s: past ds101's timeout here, not stat200's
    monkeypatch.setenv(TIMEOUTS_ENV, json.dumps({"ds101": 1, "stat200": 3600}))
    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    await cull_idle(  # one round of the culler's own loop, with its token and config file
        url=f"http://127.0.0.1:{hub.hub_port}/hub/api",
        api_token=environ["JUPYTERHUB_API_TOKEN"],
        inactive_limit=3600,
        logger=logging.getLogger("test-culler"),
        cull_arbiter=config.IdleCuller.cull_arbiter_hook,
    )
    assert not (await server_state(hub, "alice", "ds101"))["ready"]
    assert (await server_state(hub, "alice", "stat200"))["ready"]
    await hub.api("DELETE", "/users/alice/servers/stat200")


def _is_service_of(proc: Path, module: str, hub) -> bool:
    """Is ``proc`` a ``python -m module`` started by this test's hub?"""
    try:
        cmdline = (proc / "cmdline").read_bytes().decode().split("\0")
        environ = (proc / "environ").read_bytes().decode().split("\0")
    except OSError:
        return False
    return (
        module in cmdline
        and f"JUPYTERHUB_API_URL=http://127.0.0.1:{hub.hub_port}/hub/api" in environ
    )


async def test_home_page_lists_only_own_courses(hub):
    home = await hub.page("bob", "/hub/home")
    assert "Data analysis with Python" in home.text
    assert "Statistical inference" not in home.text


@pytest.mark.parametrize(
    ("user", "server", "status", "message"),
    [
        ("bob", "stat200", 403, "bob is not enrolled in stat200 (Statistical inference)."),
        ("alice", "hist100", 403, "hist100 (Digital history) is closed: it was open from"),
        ("alice", "future101", 403, "future101 (Next term) is not open yet: it is open from"),
        ("alice", "nosuch", 404, "There is no course 'nosuch'"),
        ("alice", "", 400, "Each course has its own server"),
    ],
)
async def test_refusals_say_why(hub, user, server, status, message):
    token = await hub.user_token(user)
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    r = await hub.api("POST", path, token=token)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]
    r = await hub.api("GET", f"/users/{user}")
    assert server not in r.json()["servers"] or not r.json()["servers"][server]["ready"]


async def test_closed_course_message_gives_its_dates(hub, catalog_path):
    from hub_ext.courses import Catalog

    hist100 = Catalog.load(catalog_path)["hist100"]
    token = await hub.user_token("alice")
    r = await hub.api("POST", "/users/alice/servers/hist100", token=token)
    assert hist100.describe_window() in r.json()["message"]


async def test_grace_period_still_opens(hub):
    token = await hub.user_token("alice")
    r = await hub.start_server("alice", "grace200", token=token)
    assert r.status_code in (201, 202), r.text
    await hub.api("DELETE", "/users/alice/servers/grace200")


async def test_teacher_may_prepare_a_course_before_it_opens(hub):
    token = await hub.user_token("tina")
    r = await hub.start_server("tina", "future101", token=token)
    assert r.status_code in (201, 202), r.text
    await hub.api("DELETE", "/users/tina/servers/future101")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def async_hub(tmp_path_factory, catalog_path):
    """A hub that answers a start request at once (202), so its progress can be followed."""
    process = HubProcess(
        tmp_path_factory.mktemp("async-hub"),
        catalog_path,
        extra_config='c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}\n',
    )
    await process.start()
    try:
        yield process
    finally:
        await process.shutdown()


async def test_progress_reports_course_steps(async_hub):
    hub = async_hub
    token = await hub.user_token("bob")
    messages = await hub.follow_progress("bob", "ds101", token, timeout=60)
    text = "\n".join(messages)
    assert "Checking your enrollment in ds101" in text
    assert "Your workspace: " in text and "workspaces/ds101/bob" in text
    assert messages[-1].startswith("Server ready")
    await hub.api("DELETE", "/users/bob/servers/ds101")


async def test_materials_are_read_only(hub, catalog_path):
    token = await hub.user_token("alice")
    await hub.start_server("alice", "ds101", token=token)
    r = await server_get(hub, "alice", "ds101", "api/contents/materials/README.md", token)
    assert r.status_code == 200, r.text
    assert "Read-only course materials" in r.json()["content"]
    r = await server_put(
        hub, "alice", "ds101", "api/contents/materials/mine.txt", token, text_file("x")
    )
    # EROFS (the read-only mount), in the learner's words (hub_ext_course_contents)
    assert r.status_code == 403
    assert "the folder materials/ is read-only" in r.json()["message"]
    r = await server_put(
        hub, "alice", "ds101", "api/contents/materials/README.md", token, text_file("defaced")
    )
    assert r.status_code >= 400
    materials = catalog_path.parent / "materials" / "ds101"
    assert sorted(p.name for p in materials.iterdir()) == ["README.md"]
    assert "Read-only course materials" in (materials / "README.md").read_text()


async def test_workspace_survives_stop_start_and_hub_restart(hub):
    token = await hub.user_token("carol")
    await hub.start_server("carol", "stat200", token=token)
    r = await server_put(
        hub, "carol", "stat200", "api/contents/notes.txt", token, text_file("week 1")
    )
    assert r.status_code in (200, 201), r.text

    # stop -> start
    r = await hub.api("DELETE", "/users/carol/servers/stat200")
    assert r.status_code in (202, 204)
    await wait_stopped(hub, "carol", "stat200")
    await hub.start_server("carol", "stat200", token=token)
    r = await server_get(hub, "carol", "stat200", "api/contents/notes.txt", token)
    assert r.json()["content"] == "week 1"

    # hub restart with the server running: it is found again, reachable, same workspace
    pid = (await server_state(hub, "carol", "stat200"))["state"]["pid"]
    await hub.restart()
    model = await server_state(hub, "carol", "stat200")
    assert model["ready"] and model["state"]["pid"] == pid and model["state"]["course"] == "stat200"
    r = await server_get(hub, "carol", "stat200", "api/contents/notes.txt", token)
    assert r.status_code == 200 and r.json()["content"] == "week 1"

    # and after a stop -> start following the restart
    await hub.api("DELETE", "/users/carol/servers/stat200")
    await wait_stopped(hub, "carol", "stat200")
    await hub.start_server("carol", "stat200", token=token)
    r = await server_get(hub, "carol", "stat200", "api/contents/notes.txt", token)
    assert r.json()["content"] == "week 1"


async def wait_stopped(hub, user, server):
    import asyncio

    for _ in range(200):
        model = (await hub.api("GET", f"/users/{user}")).json()["servers"].get(server)
        if not model:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user}/{server} did not stop")


async def test_course_servers_cannot_be_renamed(hub):
    token = await hub.user_token("bob")
    await hub.start_server("bob", "ds101", token=token)
    await hub.api("DELETE", "/users/bob/servers/ds101")
    await wait_stopped(hub, "bob", "ds101")
    r = await hub.api("PATCH", "/users/bob/servers/ds101", token=token, json={"name": "mine"})
    assert r.status_code == 400, r.text
    assert (
        "ds101 is a course server: its name is the course's and cannot change."
        in r.json()["message"]
    )
    r = await hub.api("GET", "/users/bob", params={"include_stopped_servers": "1"})
    assert "ds101" in r.json()["servers"] and "mine" not in r.json()["servers"]


async def test_teacher_home_page_lists_no_learners(hub):
    """A course's class is on its course page (a MOOC course has thousands), not on the
    home page: the teacher's home page lists the courses only (their links to the course
    pages: tests/test_pages_stock.py)."""
    token = await hub.user_token("alice")
    await hub.start_server("alice", "ds101", token=token)
    home = await hub.page("tina", "/hub/home")
    assert 'data-server-name="ds101"' in home.text
    assert "learner-table" not in home.text and 'data-learner="' not in home.text
    assert 'href="/user/alice/ds101/"' not in home.text


async def test_home_page_offers_the_workspace_download_while_work_is_reachable(
    tmp_path, catalog_path
):
    """With the Docker tier's export service configured (here only its home-page link: the
    service itself is tested in test_docker_export.py), open and grace courses link to it."""
    hub = HubProcess(
        tmp_path,
        catalog_path,
        extra_config="c.JupyterHub.template_vars = {**c.JupyterHub.template_vars, "
        '"workspace_export": "/services/workspace-export/"}\n',
    )
    await hub.start()
    try:
        home = (await hub.page("alice", "/hub/home")).text
    finally:
        await hub.shutdown()
    links = {
        course
        for course in ("ds101", "stat200", "grace200", "hist100", "future101")
        if f'href="/services/workspace-export/{course}"' in home
    }
    assert links == {"ds101", "stat200", "grace200"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stats_hub(tmp_path_factory):
    """A hub whose stat200 runs only the ``stats`` kernel (python3 is installed here too)."""
    from tests.conftest import day, write_catalog

    catalog = write_catalog(
        tmp_path_factory.mktemp("stats-catalog"),
        [
            {
                "id": "stat200",
                "title": "Statistical inference",
                "opens": day(-10),
                "closes": day(90),
                "kernels": ["stats"],
                "learners": ["alice"],
            }
        ],
    )
    process = HubProcess(tmp_path_factory.mktemp("stats-hub"), catalog)
    await process.start()
    try:
        yield process
    finally:
        await process.shutdown()


async def server_post(hub, user, server, path, token, body):
    async with httpx.AsyncClient(timeout=60) as c:
        return await c.post(
            f"{hub.url}/user/{user}/{server}/{path}",
            headers={"Authorization": f"token {token}"},
            json=body,
        )


async def test_a_course_server_starts_only_the_courses_kernels(stats_hub):
    """Finding 6: whatever the REST API asks, stat200 (kernels: [stats]) starts no python3
    kernel, though python3 is installed (and ipykernel's native kernel is importable)."""
    hub = stats_hub
    token = await hub.user_token("alice")
    r = await hub.start_server("alice", "stat200", token=token)
    assert r.status_code in (201, 202), r.text
    specs = (await server_get(hub, "alice", "stat200", "api/kernelspecs", token)).json()
    assert set(specs["kernelspecs"]) == {"stats"} and specs["default"] == "stats"

    for name in ("python3", "PYTHON3", "nosuch"):
        r = await server_post(hub, "alice", "stat200", "api/kernels", token, {"name": name})
        assert r.status_code in (403, 404), (name, r.status_code, r.text)
    r = await server_post(
        hub,
        "alice",
        "stat200",
        "api/sessions",
        token,
        {"path": "x.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    )
    assert r.status_code >= 400, r.text
    kernels = (await server_get(hub, "alice", "stat200", "api/kernels", token)).json()
    assert kernels == [], kernels

    # the course's own kernel starts
    r = await server_post(hub, "alice", "stat200", "api/kernels", token, {"name": "stats"})
    assert r.status_code == 201, r.text
    r = await server_post(hub, "alice", "stat200", "api/kernels", token, {})
    assert r.status_code == 201 and r.json()["name"] == "stats", r.text
    kernels = (await server_get(hub, "alice", "stat200", "api/kernels", token)).json()
    assert {k["name"] for k in kernels} == {"stats"}


async def wait_for(predicate, timeout: float = 10):
    import asyncio

    for _ in range(int(timeout / 0.1)):
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_refused_names_leave_no_server_records(hub):
    """Finding 8: each refused start used to leave a server record (400 names, 400 rows)."""
    token = await hub.user_token("bob")
    refused = [f"nosuch{i}" for i in range(4)] + ["stat200", "hist100"]
    for name in refused:
        r = await hub.api("POST", f"/users/bob/servers/{name}", token=token)
        assert r.status_code in (403, 404), r.text
    # the browser's spawn page is refused too
    page = await hub.page("bob", "/hub/spawn/bob/nosuch9")
    assert page.status_code == 404

    async def none_left():
        r = await hub.api("GET", "/users/bob", params={"include_stopped_servers": "1"})
        return not set(r.json()["servers"]) & {*refused, "nosuch9"}

    assert await wait_for(none_left), (
        await hub.api("GET", "/users/bob", params={"include_stopped_servers": "1"})
    ).json()["servers"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def clock_hub(tmp_path_factory):
    """A hub whose spawner clock is a file the test writes (to close a course)."""
    from tests.conftest import day, write_catalog

    work = tmp_path_factory.mktemp("clock-hub")
    clock = work / "now.txt"
    clock.write_text(day(0))
    catalog = write_catalog(
        tmp_path_factory.mktemp("clock-catalog"),
        [
            {
                "id": "ds101",
                "title": "Data analysis with Python",
                "opens": day(-10),
                "closes": day(10),
                "learners": ["alice"],
            }
        ],
    )
    extra = (
        "from datetime import UTC, datetime\n"
        f"c.CourseLocalSpawner.now = lambda: datetime.fromisoformat(open({str(clock)!r}).read())"
        ".replace(tzinfo=UTC)\n"
    )
    process = HubProcess(work, catalog, extra_config=extra)
    process.clock = clock
    await process.start()
    try:
        yield process
    finally:
        await process.shutdown()


async def test_a_refused_server_that_ran_keeps_its_record(clock_hub):
    """Finding 8's other side: the record of a server that ran (it has state) is kept when
    a later start is refused (here: the course has closed)."""
    from tests.conftest import day

    hub = clock_hub
    token = await hub.user_token("alice")
    r = await hub.start_server("alice", "ds101", token=token)
    assert r.status_code in (201, 202), r.text
    await hub.api("DELETE", "/users/alice/servers/ds101")
    await wait_stopped(hub, "alice", "ds101")
    hub.clock.write_text(day(30))
    r = await hub.api("POST", "/users/alice/servers/ds101", token=token)
    assert r.status_code == 403 and "is closed" in r.json()["message"], r.text
    await wait_for(lambda: _false(), timeout=1)  # give a removal, if any, time to happen
    r = await hub.api("GET", "/users/alice", params={"include_stopped_servers": "1"})
    assert r.json()["servers"]["ds101"]["state"]["course"] == "ds101"
    hub.clock.write_text(day(0))
    r = await hub.start_server("alice", "ds101", token=token)
    assert r.status_code in (201, 202), r.text


async def _false():
    return False
