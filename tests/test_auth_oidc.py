"""CourseOAuthenticator end to end: a real hub and proxy, a real OpenID provider on 127.0.0.1.

The provider is panva's oidc-provider (dev_idp/server.mjs), run as a subprocess; logins go
through the hub's /hub/oauth_login, the provider's login form and back (tests/idp_fixtures).
Access tokens last 3 s here, so most refreshes also exercise the refresh-token grant.
The catalog lists nobody: every course group comes from the provider's claims or a roster.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import write_catalog
from tests.idp_fixtures import oidc_authorize, oidc_login, start_oidc_hub
from tests.test_rbac_hub import open_in_browser

pytestmark = pytest.mark.asyncio(loop_scope="session")


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


ACCOUNTS = [
    {
        "username": "alice",
        "password": "pw-alice",
        "email": "alice@example.edu",
        "email_verified": True,
        "groups": [
            "course:ds101:learner",
            "course:stat200:learner",
            "course:nosuch:learner",
            "staff-lunch",
        ],
    },
    {"username": "bob", "password": "pw-bob", "groups": ["course:ds101:learner"]},
    {"username": "tina", "password": "pw-tina", "groups": ["course:ds101:teacher"]},
    {
        "username": "sam",
        "password": "pw-sam",
        "groups": ["urn:mace:example.edu:course:stat200:teacher"],
    },
    # no claimed groups: enrolled by the catalog's roster file, matched by verified email
    {
        "username": "dan",
        "password": "pw-dan",
        "email": "dan@example.edu",
        "email_verified": True,
        "groups": [],
    },
    # same roster email, but the provider has not verified it: not enrolled
    {
        "username": "dave",
        "password": "pw-dave",
        "email": "dan@example.edu",
        "email_verified": False,
    },
    # same roster email, and the provider says nothing about its verification: not enrolled
    {"username": "dora", "password": "pw-dora", "email": "dan@example.edu"},
    {"username": "eve", "password": "pw-eve", "groups": []},
    {"username": "mallory", "password": "pw-mallory", "groups": "course:ds101:learner"},
    {"username": "root", "password": "pw-root", "groups": ["hub-admins"]},
]


def oidc_catalog(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stat200-roster.csv").write_text("email,role\ndan@example.edu,learner\n")
    return write_catalog(
        directory,
        [
            {
                "id": "ds101",
                "title": "Data analysis with Python",
                "opens": day(-30),
                "closes": day(60),
            },
            {
                "id": "stat200",
                "title": "Statistical inference",
                "opens": day(-10),
                "closes": day(90),
                "rosters": ["stat200-roster.csv"],
            },
        ],
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def oidc(tmp_path_factory, hub_db_url):
    base = tmp_path_factory.mktemp("oidc")
    env = await start_oidc_hub(
        base,
        oidc_catalog(base / "catalog"),
        [dict(a) for a in ACCOUNTS],
        refresh_age=2,
        access_token_ttl=3,
        db_url=hub_db_url("oidc"),
    )
    try:
        yield env
    finally:
        await env.stop()


async def groups_of(oidc, username) -> set[str]:
    r = await oidc.hub.api("GET", f"/users/{username}")
    assert r.status_code == 200, r.text
    return set(r.json()["groups"])


async def test_login_through_the_provider_gives_the_claimed_course_groups(oidc):
    client = await oidc.login("alice")
    try:
        r = client.last_response
        assert str(r.url) == f"{oidc.hub.url}/hub/home"
        assert "Data analysis with Python" in r.text and "Statistical inference" in r.text
    finally:
        await client.aclose()
    # exactly the course groups: the unknown course and the non-course group are dropped
    assert await groups_of(oidc, "alice") == {"course:ds101:learner", "course:stat200:learner"}
    assert "Ignoring course:nosuch:learner of alice: no such course in the catalog" in (
        oidc.hub.log_path.read_text()
    )
    state = await oidc.auth_state("alice")
    assert state["access_token"] and state["refresh_token"] and state["id_token"]
    assert state["oauth_user"]["preferred_username"] == "alice"


async def test_entitlement_urn_and_roster_enrol(oidc):
    for username in ("sam", "dan", "tina", "bob"):
        await (await oidc.login(username)).aclose()
    assert await groups_of(oidc, "sam") == {"course:stat200:teacher"}
    assert await groups_of(oidc, "dan") == {"course:stat200:learner"}
    assert await groups_of(oidc, "tina") == {"course:ds101:teacher"}


async def test_unverified_email_does_not_match_a_roster(oidc):
    client = await oidc_login(oidc.hub.url, "dave", "pw-dave", expect_ok=False)
    await client.aclose()
    r = client.last_response
    assert r.status_code == 403
    assert "You are not enrolled in any course on this hub" in r.text


async def test_email_without_email_verified_does_not_match_a_roster(oidc):
    client = await oidc_login(oidc.hub.url, "dora", "pw-dora", expect_ok=False)
    await client.aclose()
    r = client.last_response
    assert r.status_code == 403
    assert "You are not enrolled in any course on this hub" in r.text
    assert (await oidc.hub.api("GET", "/users/dora")).status_code == 404


async def test_admin_by_provider_group(oidc):
    await (await oidc.login("root")).aclose()
    r = await oidc.hub.api("GET", "/users/root")
    assert r.json()["admin"] is True
    assert set(r.json()["groups"]) == {"hub-admins"}

    # removed from the provider's admin group: no longer an admin at the next refresh
    token = (await oidc.hub.api("POST", "/users/root/tokens", json={"note": "t"})).json()["token"]
    oidc.set_groups("root", ["course:ds101:teacher"])
    try:
        await asyncio.sleep(2.5)  # past auth_refresh_age (2 s): the next request refreshes
        r = await oidc.hub.api("GET", "/user", token=token)
        assert r.status_code == 200, r.text
        r = await oidc.hub.api("GET", "/users/root")
        assert r.json()["admin"] is False
        assert set(r.json()["groups"]) == {"course:ds101:teacher"}
    finally:
        oidc.set_groups("root", ["hub-admins"])


async def test_not_enrolled_is_refused_with_a_clear_page(oidc):
    client = await oidc_login(oidc.hub.url, "eve", "pw-eve", expect_ok=False)
    await client.aclose()
    r = client.last_response
    assert r.status_code == 403
    assert "You are not enrolled in any course on this hub" in r.text
    assert "Traceback" not in r.text
    assert (await oidc.hub.api("GET", "/users/eve")).status_code == 404


async def test_groups_claim_that_is_not_a_list_is_refused_and_changes_nothing(oidc):
    client = await oidc_login(oidc.hub.url, "mallory", "pw-mallory", expect_ok=False)
    await client.aclose()
    r = client.last_response
    assert r.status_code == 502
    assert "sent the &#39;groups&#39; claim as a str, not a list of groups" in r.text or (
        "sent the 'groups' claim as a str, not a list of groups" in r.text
    )
    assert "Traceback" not in r.text
    assert (await oidc.hub.api("GET", "/users/mallory")).status_code == 404

    # a user who already has courses keeps them when the claim turns bad at a refresh
    await (await oidc.login("bob")).aclose()
    token = (await oidc.hub.api("POST", "/users/bob/tokens", json={"note": "t"})).json()["token"]
    oidc.set_groups("bob", "course:ds101:learner")
    try:
        await asyncio.sleep(2.5)  # past auth_refresh_age (2 s): the next request refreshes
        r = await oidc.hub.api("GET", "/user", token=token)
        assert r.status_code == 200, r.text
        assert await groups_of(oidc, "bob") == {"course:ds101:learner"}
        assert "claim as a str, not a list of groups" in oidc.hub.log_path.read_text()
    finally:
        oidc.set_groups("bob", ["course:ds101:learner"])


async def test_wrong_password_stays_at_the_provider(oidc):
    async with httpx.AsyncClient(timeout=30) as client:
        r = await oidc_authorize(client, oidc.hub.url, "alice", "not-her-password")
    assert r.status_code == 401
    assert "Unknown username or wrong password." in r.text


async def test_logout_ends_the_session_at_the_provider(oidc):
    """A shared lab computer: after logging out of the hub, the next login asks for a password
    (the default logout_redirect_url is the provider's end_session_endpoint)."""
    client = await oidc.login("bob")
    try:
        # signed in at the provider: a login at the hub goes through without the form
        r = await client.get(f"{oidc.hub.url}/hub/oauth_login", follow_redirects=True)
        assert str(r.url) == f"{oidc.hub.url}/hub/home"
        r = await client.get(f"{oidc.hub.url}/hub/logout")
        assert r.status_code == 302
        assert r.headers["location"] == (
            f"{oidc.idp.issuer}/session/end?client_id={oidc.idp.client_id}"
        )
        r = await client.get(r.headers["location"])  # the provider's "sign out?" form
        m = re.search(r'action="([^"]+/session/end/confirm)".*?name="xsrf" value="([^"]+)"', r.text)
        assert m, r.text[:500]
        r = await client.post(m[1], data={"xsrf": m[2], "logout": "yes"}, follow_redirects=True)
        assert r.status_code == 200
        r = await client.get(f"{oidc.hub.url}/hub/oauth_login", follow_redirects=True)
        assert str(r.url).startswith(f"{oidc.idp.issuer}/interaction/")
        assert 'name="password"' in r.text
    finally:
        await client.aclose()


async def test_refresh_removes_and_adds_a_course(oidc):
    hub = oidc.hub
    await (await oidc.login("alice")).aclose()
    token = (await hub.api("POST", "/users/alice/tokens", json={"note": "t"})).json()["token"]
    before = await oidc.record_tokens("alice")

    # dropped from ds101 at the provider: the refresh before a spawn removes the course
    oidc.set_groups("alice", ["course:stat200:learner"])
    r = await hub.api("POST", "/users/alice/servers/ds101", token=token)
    assert r.status_code == 403, r.text
    assert "alice is not enrolled in ds101" in r.json()["message"]
    assert await groups_of(oidc, "alice") == {"course:stat200:learner"}

    # added back: the next refresh (auth_refresh_age) gives it back, and the server starts
    oidc.set_groups("alice", ["course:ds101:learner", "course:stat200:learner"])
    await asyncio.sleep(2.5)
    r = await hub.api("GET", "/user", token=token)
    assert r.status_code == 200
    assert await groups_of(oidc, "alice") == {"course:ds101:learner", "course:stat200:learner"}
    r = await hub.start_server("alice", "ds101", token=token)
    assert r.status_code in (201, 202), r.text

    # the access token (3 s) expired on the way: the hub used the refresh token
    after = await oidc.record_tokens("alice")
    assert after["access_token"] != before["access_token"]
    assert "Refreshing oauth access token for alice" in hub.log_path.read_text()


async def test_course_teacher_from_claims_opens_that_server_only(oidc):
    hub = oidc.hub
    # alice's ds101 server runs (previous test); start her stat200 one too
    await (await oidc.login("alice")).aclose()
    r = await hub.start_server("alice", "stat200")
    assert r.status_code in (201, 202), r.text
    tina = await oidc.login("tina")
    try:
        r = await open_in_browser(tina, f"{hub.url}/user/alice/ds101/")
        assert r.status_code == 200 and "/user/alice/ds101/" in str(r.url), (r.status_code, r.url)
        r = await open_in_browser(tina, f"{hub.url}/user/alice/stat200/")
        assert r.status_code in (403, 404), (r.status_code, r.url)
    finally:
        await tina.aclose()
    # a learner of the same course cannot open alice's server
    bob = await oidc.login("bob")
    try:
        r = await open_in_browser(bob, f"{hub.url}/user/alice/ds101/")
        assert r.status_code in (403, 404), (r.status_code, r.url)
    finally:
        await bob.aclose()


async def test_zz_hub_log_holds_no_secret(oidc):
    """Runs last in this module: every token the hub received, and the client secret."""
    for username in ("alice", "bob", "tina", "sam", "dan", "root"):
        await oidc.record_tokens(username)
    secrets = {oidc.idp.client_secret, oidc.crypt_key, *oidc.seen_tokens}
    assert len(oidc.seen_tokens) >= 12, "expected access, refresh and id tokens of several users"
    log = oidc.hub.log_path.read_text(errors="replace")
    assert "Refreshing oauth access token" in log  # the log covers logins and refreshes
    leaked = [s[:6] + "..." for s in secrets if s and s in log]
    assert leaked == []


async def test_provider_down_at_login_gives_a_friendly_page(tmp_path):
    """Its own provider and hub: the provider is stopped between its login form and the
    hub's callback, so the hub's token request finds nobody listening."""
    env = await start_oidc_hub(
        tmp_path, oidc_catalog(tmp_path / "catalog"), [dict(a) for a in ACCOUNTS], refresh_age=1
    )
    try:
        bob = await env.login("bob")  # logged in while the provider is up
        token = (await env.hub.api("POST", "/users/bob/tokens", json={"note": "t"})).json()["token"]
        await bob.aclose()
        async with httpx.AsyncClient(timeout=30) as client:
            r = await oidc_authorize(client, env.hub.url, "alice", "pw-alice")
            assert r.is_redirect
            from dev_idp.launch import stop_idp

            stop_idp(env.idp.pid)
            r = await client.get(r.headers["location"], follow_redirects=True)
        assert r.status_code == 503
        assert "The login service could not be reached" in r.text
        assert "Traceback" not in r.text and "File &quot;" not in r.text
        assert (await env.hub.api("GET", "/users/alice")).status_code == 404
        # bob, already in, keeps working and keeps his course while the provider is down
        await asyncio.sleep(1.5)  # past auth_refresh_age (1 s)
        r = await env.hub.api("GET", "/user", token=token)
        assert r.status_code == 200, r.text
        assert set(r.json()["groups"]) == {"course:ds101:learner"}
        assert "Keeping bob's current groups" in env.hub.log_path.read_text()
        # and this hub's log holds none of its secrets either
        log = env.hub.log_path.read_text(errors="replace")
        for secret in (env.idp.client_secret, env.crypt_key, *env.seen_tokens):
            assert secret not in log
        assert len(env.seen_tokens) == 3
    finally:
        await env.stop()


async def test_provider_down_at_start_stops_the_hub_saying_why(tmp_path):
    """The discovery document is read when the hub starts: nobody listens at the issuer."""
    from tests.hubtest import HubProcess, free_port

    issuer = f"http://127.0.0.1:{free_port()}"
    hub = HubProcess(
        tmp_path / "hub",
        oidc_catalog(tmp_path / "catalog"),
        extra_config=f"""
from hub_ext.authenticator import configure_oidc
configure_oidc(c, {issuer!r}, "course-hub", "s3cret-never-logged")
c.CryptKeeper.keys = [bytes(32)]
""",
    )
    with pytest.raises(RuntimeError, match="the hub exited with 1") as info:
        await hub.start()
    await hub.stop()
    message = str(info.value)
    assert (
        f"Cannot read the OpenID provider's discovery document at {issuer}"
        "/.well-known/openid-configuration: [Errno 111] Connection refused." in message
    )
    assert "The hub will not start." in message
    assert "Traceback" not in message
    assert "s3cret-never-logged" not in hub.log_path.read_text()
