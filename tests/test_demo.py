"""The demo configuration itself (hub_config/demo_config.py), on a real hub and proxy, logging
in through the real development OpenID provider, as `make demo` runs it.

Only the ports differ from `make demo` (the harness picks free loopback ports); the catalog,
the provider and its accounts, the kernels and the state directory are the demo's own.
"""

from __future__ import annotations

import os
import secrets

import httpx
import pytest
import pytest_asyncio

from dev_idp.launch import start_idp, stop_idp
from tests.hubtest import REPO, HubProcess
from tests.idp_fixtures import oidc_login

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def demo_hub(tmp_path_factory):
    state = tmp_path_factory.mktemp("demo-state")
    saved = {k: os.environ.get(k) for k in ("HUB_EXT_DEMO_DIR", "JUPYTERHUB_CRYPT_KEY")}
    os.environ.update(HUB_EXT_DEMO_DIR=str(state), JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32))
    hub = HubProcess(
        tmp_path_factory.mktemp("demo"),
        REPO / "hub_config" / "courses.yaml",
        base_config=f"load_subconfig({str(REPO / 'hub_config' / 'demo_config.py')!r})  # noqa\n",
    )
    idp = start_idp(state / "idp", [f"{hub.url}/hub/oauth_callback"])
    try:
        await hub.start()
        yield hub
    finally:
        await hub.shutdown()
        stop_idp(idp.pid)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def test_demo_accounts_log_in_through_the_provider(demo_hub):
    client = await oidc_login(demo_hub.url, "alice", "alice-demo")
    try:
        home = await client.get(f"{demo_hub.url}/hub/home")
    finally:
        await client.aclose()
    assert "Data analysis with Python" in home.text and "Statistical inference" in home.text
    assert 'data-course-status="closed"' in home.text  # hist100, without a start button
    assert 'id="start-hist100"' not in home.text
    r = await demo_hub.api("GET", "/users/alice")
    assert set(r.json()["groups"]) == {
        "course:ds101:learner",
        "course:stat200:learner",
        "course:hist100:learner",
    }
    services = (await demo_hub.api("GET", "/services")).json()
    assert {"events", "analytics", "idle-culler"} <= set(services)
    client = await oidc_login(demo_hub.url, "admin", "admin-demo")
    await client.aclose()
    assert (await demo_hub.api("GET", "/users/admin")).json()["admin"] is True


async def test_the_demo_admin_may_call_every_courses_analytics(demo_hub):
    """Trust-boundaries finding 10: the README says admins may call every course's analytics;
    the demo's admin (an admin by the provider's hub-admins group) was refused them."""
    from hub_ext.courses import Catalog, analytics_scope

    await (await oidc_login(demo_hub.url, "admin", "admin-demo")).aclose()
    token = (await demo_hub.api("POST", "/users/admin/tokens", json={"note": "t"})).json()["token"]
    scopes = set((await demo_hub.api("GET", "/user", token=token)).json()["scopes"])
    assert scopes & {"access:services", "access:services!service=analytics"}
    catalog = Catalog.load(REPO / "hub_config" / "courses.yaml")
    assert {analytics_scope(course) for course in catalog} <= scopes
    # and a learner has none of them
    await (await oidc_login(demo_hub.url, "alice", "alice-demo")).aclose()
    token = (await demo_hub.api("POST", "/users/alice/tokens", json={"note": "t"})).json()["token"]
    scopes = set((await demo_hub.api("GET", "/user", token=token)).json()["scopes"])
    assert not {analytics_scope(course) for course in catalog} & scopes


async def test_each_demo_course_runs_its_own_kernel(demo_hub):
    await (await oidc_login(demo_hub.url, "alice", "alice-demo")).aclose()
    token = (await demo_hub.api("POST", "/users/alice/tokens", json={"note": "test"})).json()[
        "token"
    ]
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
