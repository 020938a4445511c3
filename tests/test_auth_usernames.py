"""Usernames made from the provider's claims, attacked through a real hub and provider.

Each hub here runs one ``username_policy`` against the development OpenID provider
(dev_idp, panva's oidc-provider on 127.0.0.1); the attacker is an account at that provider
whose claims are chosen to land on someone else's hub account, or on a name that is not
safe as a server or volume name. Nothing is faked.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import write_catalog
from tests.idp_fixtures import oidc_login, start_oidc_hub

pytestmark = pytest.mark.asyncio(loop_scope="session")


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def catalog(directory: Path) -> Path:
    return write_catalog(
        directory,
        [
            {"id": "ds101", "title": "D", "opens": day(-1), "closes": day(30)},
            {"id": "stat200", "title": "S", "opens": day(-1), "closes": day(30)},
        ],
    )


async def groups_of(env, username) -> set[str] | None:
    r = await env.hub.api("GET", f"/users/{username}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return set(r.json()["groups"])


# ------------------------------------------------------------------ email_local_part

EMAIL_ACCOUNTS = [
    {
        "username": "alice",
        "password": "pw-alice",
        "email": "alice@example.edu",
        "email_verified": True,
        "groups": ["course:ds101:learner"],
    },
    # another provider account whose (unverified: no email_verified claim at all) address
    # has the same local part as alice's
    {
        "username": "mallet",
        "password": "pw-mallet",
        "email": "alice@evil.example",
        "groups": ["course:stat200:learner"],
    },
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def email_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("email-policy")
    env = await start_oidc_hub(
        base,
        catalog(base / "catalog"),
        [dict(a) for a in EMAIL_ACCOUNTS],
        extra_config='c.CourseOAuthenticator.username_policy = "email_local_part"\n',
    )
    try:
        yield env
    finally:
        await env.stop()


async def test_email_without_email_verified_cannot_take_over_an_account(email_hub):
    await (await email_hub.login("alice")).aclose()
    assert await groups_of(email_hub, "alice") == {"course:ds101:learner"}

    client = await oidc_login(email_hub.hub.url, "mallet", "pw-mallet", expect_ok=False)
    await client.aclose()
    r = client.last_response
    # refused, saying why: not logged in to alice's account
    assert r.status_code == 403, (r.status_code, r.url)
    text = html.unescape(r.text)
    assert "Your email address alice@evil.example is not verified" in text
    assert "Traceback" not in text
    assert "jupyterhub-hub-login" not in {c.name for c in client.cookies.jar}
    # alice's account is untouched (manage_groups would have replaced her groups)
    assert await groups_of(email_hub, "alice") == {"course:ds101:learner"}


async def test_email_local_part_without_email_domains_is_warned_at_start(email_hub):
    log = email_hub.hub.log_path.read_text()
    assert "username_policy 'email_local_part' without email_domains" in log


# ------------------------------------------------------------------ claim

CLAIM_ACCOUNTS = [
    {
        "username": "alice",
        "password": "pw-alice",
        "name": "alice",
        "groups": ["course:ds101:learner"],
    },
    # "аlice" with a Cyrillic а: shown as "alice" on teachers' and admins' pages
    {
        "username": "mallet",
        "password": "pw-mallet",
        "name": "\u0430lice",
        "groups": ["course:ds101:learner"],
    },
    # a space: not a valid part of a container, volume or pod name
    {"username": "sp", "password": "pw-sp", "name": "Ops Team", "groups": ["course:ds101:learner"]},
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def claim_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("claim-policy")
    env = await start_oidc_hub(
        base,
        catalog(base / "catalog"),
        [dict(a) for a in CLAIM_ACCOUNTS],
        extra_config=(
            'c.CourseOAuthenticator.username_policy = "claim"\n'
            'c.CourseOAuthenticator.username_claim = "name"\n'
        ),
    )
    try:
        yield env
    finally:
        await env.stop()


@pytest.mark.parametrize(("account", "name"), [("mallet", "\u0430lice"), ("sp", "ops team")])
async def test_claim_policy_usernames_must_match_the_username_pattern(claim_hub, account, name):
    await (await claim_hub.login("alice")).aclose()  # the ordinary case still works
    client = await oidc_login(
        claim_hub.hub.url, account, claim_hub.password(account), expect_ok=False
    )
    await client.aclose()
    r = client.last_response
    assert r.status_code == 403, (r.status_code, r.url)
    text = html.unescape(r.text)
    assert f"{name!r} cannot be used as a username on this hub" in text
    assert "Traceback" not in text
    assert await groups_of(claim_hub, name) is None
