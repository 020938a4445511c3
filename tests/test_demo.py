"""The demo configuration itself (hub_config/demo_config.py), on a real hub and proxy.

Only the ports differ from `make demo` (the harness picks free loopback ports); the catalog,
the login, the kernels and the state directory are the demo's own.
"""

from __future__ import annotations

import os

import httpx
import pytest
import pytest_asyncio

from tests.hubtest import REPO, HubProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def demo_hub(tmp_path_factory):
    state = tmp_path_factory.mktemp("demo-state")
    os.environ["HUB_EXT_DEMO_DIR"] = str(state)
    hub = HubProcess(
        tmp_path_factory.mktemp("demo"),
        REPO / "hub_config" / "courses.yaml",
        base_config=f"load_subconfig({str(REPO / 'hub_config' / 'demo_config.py')!r})  # noqa\n",
    )
    hub.password = "demo"  # the password `make demo` prints
    try:
        await hub.start()
        yield hub
    finally:
        await hub.shutdown()
        os.environ.pop("HUB_EXT_DEMO_DIR", None)


async def test_demo_accounts_log_in_and_see_their_courses(demo_hub):
    home = await demo_hub.page("alice", "/hub/home")
    assert "Data analysis with Python" in home.text and "Statistical inference" in home.text
    assert 'data-course-status="closed"' in home.text  # hist100, without a start button
    assert 'id="start-hist100"' not in home.text
    with pytest.raises(RuntimeError, match="login of alice failed"):
        await demo_hub.login("alice", password="wrong")
    with pytest.raises(RuntimeError, match="login of mallory failed"):
        await demo_hub.login("mallory", password="demo")


async def test_each_demo_course_runs_its_own_kernel(demo_hub):
    token = await demo_hub.user_token("alice")
    for course, kernel in (("ds101", "python3"), ("stat200", "stats")):
        r = await demo_hub.start_server("alice", course, token=token)
        assert r.status_code in (201, 202), r.text
        async with httpx.AsyncClient(timeout=30) as c:
            specs = await c.get(
                f"{demo_hub.url}/user/alice/{course}/api/kernelspecs",
                headers={"Authorization": f"token {token}"},
            )
        assert specs.status_code == 200, specs.text
        assert specs.json()["default"] == kernel
        assert set(specs.json()["kernelspecs"]) == {kernel}
