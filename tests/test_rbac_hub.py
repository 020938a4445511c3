"""RBAC on a real hub: a course's teachers reach that course's learners and servers, no more.

Real JupyterHub, real proxy, real single-user servers (the local backend); the development
login stands in for the identity provider here (the OIDC login is tested in test_auth_oidc).
The standard catalog: ds101 (learners alice, bob; teacher tina), stat200 (learners alice,
carol; teacher sam).
"""

from __future__ import annotations

import asyncio
import html
import re

import httpx
import pytest
import pytest_asyncio

from hub_ext.rbac import SHARE_SCOPES
from tests.hubtest import HubProcess, node_available

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rbac_hub(tmp_path_factory, catalog_path, hub_db_url):
    if not node_available():
        pytest.fail("configurable-http-proxy is not installed: run `make setup` first")
    hub = HubProcess(
        tmp_path_factory.mktemp("rbac-hub"), catalog_path, db_url=hub_db_url("rbac-hub")
    )
    await hub.start()
    try:
        # alice's two course servers, started by alice herself
        alice = await hub.user_token("alice")
        for course in ("ds101", "stat200"):
            r = await hub.start_server("alice", course, token=alice)
            assert r.status_code in (201, 202), r.text
        yield hub
    finally:
        await hub.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(rbac_hub):
    return {u: await rbac_hub.user_token(u) for u in ("alice", "bob", "carol", "tina", "sam")}


async def through_proxy(hub, path, token, method="GET"):
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.request(
            method, f"{hub.url}{path}", headers={"Authorization": f"token {token}"}
        )


async def open_in_browser(browser: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET a single-user server page as a logged-in browser: follow the OAuth redirects and
    accept the hub's "authorize access to a shared server" form if it is shown."""
    r = await browser.get(path, follow_redirects=True)
    if r.status_code == 200 and "/hub/api/oauth2/authorize" in str(r.url) and "<form" in r.text:
        fields: dict[str, list[str]] = {}
        for name, value in re.findall(
            r'<input type="hidden" name="([^"]+)" value="([^"]*)"', r.text
        ):
            fields.setdefault(name, []).append(html.unescape(value))
        r = await browser.post(str(r.url), data=fields, follow_redirects=True)
    return r


async def wait_state(hub, user, server, *, running: bool, timeout: float = 60):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        model = (await hub.api("GET", f"/users/{user}")).json()["servers"].get(server)
        if running and model and model.get("ready"):
            return
        if not running and not model:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{user}/{server} did not {'start' if running else 'stop'}")


async def test_learner_server_is_shared_with_its_course_teachers_only(rbac_hub):
    r = await rbac_hub.api("GET", "/shares/alice/ds101")
    assert r.status_code == 200, r.text
    shares = r.json()["items"]
    assert [s["group"]["name"] for s in shares] == ["course:ds101:teacher"]
    assert sorted(shares[0]["scopes"]) == sorted(f"{s}!server=alice/ds101" for s in SHARE_SCOPES)
    r = await rbac_hub.api("GET", "/shares/alice/stat200")
    assert [s["group"]["name"] for s in r.json()["items"]] == ["course:stat200:teacher"]


async def test_teacher_lists_own_course_learners_only(rbac_hub, tokens):
    r = await rbac_hub.api("GET", "/groups/course:ds101:learner", token=tokens["tina"])
    assert r.status_code == 200, r.text
    assert sorted(r.json()["users"]) == ["alice", "bob"]
    r = await rbac_hub.api("GET", "/users", token=tokens["tina"])
    assert r.status_code == 200, r.text
    listed = {u["name"] for u in r.json()}
    assert {"alice", "bob"} <= listed
    assert "carol" not in listed and "sam" not in listed
    # a learner of another course, and the other course's group: not found
    r = await rbac_hub.api("GET", "/users/carol", token=tokens["tina"])
    assert r.status_code == 404
    r = await rbac_hub.api("GET", "/groups/course:stat200:learner", token=tokens["tina"])
    assert r.status_code in (403, 404)


async def test_teacher_reads_activity_but_not_other_enrollments(rbac_hub, tokens):
    r = await rbac_hub.api("GET", "/users/alice", token=tokens["tina"])
    assert r.status_code == 200, r.text
    model = r.json()
    assert model["name"] == "alice" and "last_activity" in model
    # alice's stat200 enrollment and server stay hidden from a ds101 teacher
    assert "groups" not in model
    assert set(model.get("servers", {})) == {"ds101"}


async def test_teacher_stops_starts_and_opens_the_course_server(rbac_hub, tokens):
    hub, tina = rbac_hub, tokens["tina"]
    r = await hub.api("DELETE", "/users/alice/servers/ds101", token=tina)
    assert r.status_code in (202, 204), r.text
    await wait_state(hub, "alice", "ds101", running=False)
    r = await hub.api("POST", "/users/alice/servers/ds101", token=tina)
    assert r.status_code in (201, 202), r.text
    await wait_state(hub, "alice", "ds101", running=True)
    # open it through the proxy, with a token...
    r = await through_proxy(hub, "/user/alice/ds101/api/status", tina)
    assert r.status_code == 200, r.text
    # ... and as a browser does: cookie login, then the server's OAuth handshake
    browser = await hub.login("tina")
    try:
        r = await open_in_browser(browser, "/user/alice/ds101/")
        assert r.status_code == 200, (r.status_code, str(r.url))
        assert "/user/alice/ds101/" in str(r.url)
        r = await browser.get("/user/alice/ds101/api/contents")
        assert r.status_code == 200, (r.status_code, str(r.url))
        assert r.json()["type"] == "directory"
        # the same browser is refused alice's stat200 server
        r = await open_in_browser(browser, "/user/alice/stat200/")
        assert r.status_code in (403, 404), (r.status_code, str(r.url))
    finally:
        await browser.aclose()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/users/alice/servers/stat200"),
        ("POST", "/users/alice/servers/stat200"),
        ("GET", "/users/alice/servers/stat200"),
        ("POST", "/users/carol/servers/stat200"),
        ("GET", "/users/carol"),
        ("POST", "/users/newcomer"),
        ("DELETE", "/users/bob"),
        ("GET", "/users/alice/tokens"),
        ("POST", "/groups/course:ds101:learner/users"),
        ("GET", "/shares/alice"),
        ("POST", "/shares/alice/stat200"),
        ("GET", "/proxy"),
    ],
)
async def test_teacher_gets_nothing_beyond_the_course(rbac_hub, tokens, method, path):
    kwargs = {"json": {"users": ["tina"]}} if path.endswith("/users") else {}
    if path.startswith("/shares/alice/"):
        kwargs = {"json": {"group": "course:ds101:teacher"}}
    r = await rbac_hub.api(method, path, token=tokens["tina"], **kwargs)
    assert r.status_code in (403, 404), (method, path, r.status_code, r.text)


async def test_teacher_cannot_open_the_learners_other_course_server(rbac_hub, tokens):
    r = await through_proxy(rbac_hub, "/user/alice/stat200/api/status", tokens["tina"])
    assert r.status_code == 403, r.text
    model = (await rbac_hub.api("GET", "/users/alice")).json()["servers"]["stat200"]
    assert model["ready"], "tina's attempts must leave alice's stat200 server running"


async def test_the_other_course_teacher_has_the_mirror_image(rbac_hub, tokens):
    r = await through_proxy(rbac_hub, "/user/alice/stat200/api/status", tokens["sam"])
    assert r.status_code == 200, r.text
    r = await through_proxy(rbac_hub, "/user/alice/ds101/api/status", tokens["sam"])
    assert r.status_code == 403


async def test_learner_cannot_open_another_learners_server(rbac_hub, tokens):
    for who in ("bob", "carol"):
        r = await through_proxy(rbac_hub, "/user/alice/ds101/api/status", tokens[who])
        assert r.status_code == 403, (who, r.text)
        r = await rbac_hub.api("DELETE", "/users/alice/servers/ds101", token=tokens[who])
        assert r.status_code in (403, 404)
    # and alice's own token still works
    r = await through_proxy(rbac_hub, "/user/alice/ds101/api/status", tokens["alice"])
    assert r.status_code == 200


async def test_teacher_own_server_is_not_shared(rbac_hub, tokens):
    r = await rbac_hub.start_server("tina", "ds101", token=tokens["tina"])
    assert r.status_code in (201, 202), r.text
    r = await rbac_hub.api("GET", "/shares/tina/ds101")
    assert r.json()["items"] == []
    r = await through_proxy(rbac_hub, "/user/tina/ds101/api/status", tokens["alice"])
    assert r.status_code == 403
    await rbac_hub.api("DELETE", "/users/tina/servers/ds101")


async def test_teacher_shares_follow_teacher_group_membership(rbac_hub):
    """A teacher added to (removed from) the group gains (loses) the course's servers."""
    hub = rbac_hub
    r = await hub.api("POST", "/users/newt")
    assert r.status_code == 201, r.text
    r = await hub.api("POST", "/users/newt/tokens", json={"note": "test"})
    newt = r.json()["token"]
    # a fresh token for each check: a single-user server caches a token's scopes (5 min)
    r = await hub.api("GET", "/users/alice/servers/ds101", token=newt)
    assert r.status_code == 404
    r = await through_proxy(hub, "/user/alice/ds101/api/status", newt)
    assert r.status_code == 403

    r = await hub.api("POST", "/groups/course:ds101:teacher/users", json={"users": ["newt"]})
    assert r.status_code == 200, r.text
    newt2 = (await hub.api("POST", "/users/newt/tokens", json={"note": "t2"})).json()["token"]
    r = await hub.api("GET", "/users/alice/servers/ds101", token=newt2)
    assert r.status_code == 200, r.text
    r = await through_proxy(hub, "/user/alice/ds101/api/status", newt2)
    assert r.status_code == 200, r.text
    r = await through_proxy(hub, "/user/alice/stat200/api/status", newt2)
    assert r.status_code == 403

    r = await hub.api("DELETE", "/groups/course:ds101:teacher/users", json={"users": ["newt"]})
    assert r.status_code == 200, r.text
    r = await hub.api("GET", "/users/alice/servers/ds101", token=newt2)
    assert r.status_code == 404
    r = await hub.api("GET", "/users/newt/shared")
    assert r.json()["items"] == []


async def test_teacher_cannot_rename_the_shared_server(rbac_hub, tokens):
    hub, tina = rbac_hub, tokens["tina"]
    await hub.api("DELETE", "/users/alice/servers/ds101", token=tina)
    await wait_state(hub, "alice", "ds101", running=False)
    try:
        # start:servers would let a share holder rename the server, and the share would
        # follow the new name: the course spawner refuses renames
        r = await hub.api("PATCH", "/users/alice/servers/ds101", token=tina, json={"name": "x101"})
        assert r.status_code == 400, r.text
        assert "cannot change" in r.json()["message"]
        r = await hub.api("GET", "/shares/alice/ds101")
        assert r.status_code == 200 and r.json()["items"]
    finally:
        # put things back whatever happened
        await hub.api("PATCH", "/users/alice/servers/x101", json={"name": "ds101"})
        await hub.start_server("alice", "ds101")
