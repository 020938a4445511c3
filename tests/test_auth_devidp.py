"""The development OpenID provider on its own: the protocol facts the hub relies on.

A real oidc-provider process on 127.0.0.1, driven with httpx as a client would: the
authorization-code flow with PKCE (required), ``client_secret_post`` (and nothing weaker),
the userinfo ``groups`` claim, the refresh-token grant. Also: the demo accounts match the
example catalog.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx
import pytest

from dev_idp.launch import DEFAULT_ACCOUNTS, start_idp, stop_idp
from hub_ext.courses import Catalog, parse_group

REPO = Path(__file__).resolve().parent.parent
CALLBACK = "http://127.0.0.1:1/hub/oauth_callback"  # never contacted: the flow stops there


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    idp = start_idp(tmp_path_factory.mktemp("devidp"), [CALLBACK], access_token_ttl=2)
    try:
        yield idp
    finally:
        stop_idp(idp.pid)


def authorize(idp, client: httpx.Client, *, pkce: bool = True, password: str = "alice-demo"):
    verifier = secrets.token_urlsafe(32)
    params = {
        "client_id": idp.client_id,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "openid profile email groups",
        "state": "st",
    }
    if pkce:
        challenge = hashlib.sha256(verifier.encode()).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(challenge).decode().rstrip("=")
        params["code_challenge_method"] = "S256"
    r = client.get(f"{idp.issuer}/auth?{urlencode(params)}")
    while r.is_redirect and not r.headers["location"].startswith(CALLBACK):
        r = client.get(urljoin(str(r.url), r.headers["location"]))
    m = re.search(r'action="([^"]+/login)"', r.text)
    if not m:
        return r, verifier
    r = client.post(urljoin(str(r.url), m[1]), data={"username": "alice", "password": password})
    while r.is_redirect and not r.headers["location"].startswith(CALLBACK):
        r = client.get(urljoin(str(r.url), r.headers["location"]))
    return r, verifier


def code_of(r: httpx.Response) -> str:
    assert r.is_redirect and r.headers["location"].startswith(CALLBACK), (
        r.status_code,
        r.text[:300],
    )
    query = parse_qs(urlparse(r.headers["location"]).query)
    assert query["state"] == ["st"]
    return query["code"][0]


def test_code_flow_pkce_secret_post_userinfo_and_refresh(idp):
    with httpx.Client(timeout=10) as client:
        r, verifier = authorize(idp, client)
        tokens = client.post(
            f"{idp.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code_of(r),
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
            },
        ).json()
        assert {"access_token", "refresh_token", "id_token"} <= set(tokens)
        me = client.get(
            f"{idp.issuer}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).json()
        assert me["preferred_username"] == "alice"
        assert set(me["groups"]) == {
            "course:ds101:learner",
            "course:stat200:learner",
            "course:hist100:learner",
        }
        assert me["email_verified"] is True

        # once the access token has expired (2 s), userinfo refuses it and a refresh works
        import time

        time.sleep(2.5)
        r = client.get(
            f"{idp.issuer}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert r.status_code == 401
        fresh = client.post(
            f"{idp.issuer}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": idp.client_id,
                "client_secret": idp.client_secret,
            },
        ).json()
        assert fresh["access_token"] != tokens["access_token"]


def test_pkce_is_required(idp):
    with httpx.Client(timeout=10) as client:
        r, _ = authorize(idp, client, pkce=False)
    assert "location" in r.headers or r.status_code >= 400
    location = r.headers.get("location", str(r.url))
    assert "error=invalid_request" in location
    assert "requires PKCE" in parse_qs(urlparse(location).query)["error_description"][0]


def test_token_endpoint_checks_the_secret_and_the_verifier(idp):
    with httpx.Client(timeout=10) as client:
        for secret, verifier_ok, error in (
            ("wrong-secret", True, "invalid_client"),
            (idp.client_secret, False, "invalid_grant"),
        ):
            r, verifier = authorize(idp, client)
            r = client.post(
                f"{idp.issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code_of(r),
                    "redirect_uri": CALLBACK,
                    "code_verifier": verifier if verifier_ok else secrets.token_urlsafe(32),
                    "client_id": idp.client_id,
                    "client_secret": secret,
                },
            )
            assert r.status_code in (400, 401) and r.json()["error"] == error, r.text


def test_wrong_password_is_refused_at_the_form(idp):
    with httpx.Client(timeout=10) as client:
        r, _ = authorize(idp, client, password="nope")
    assert r.status_code == 401 and "Unknown username or wrong password." in r.text


def test_demo_accounts_match_the_example_catalog():
    catalog = Catalog.load(REPO / "hub_config" / "courses.yaml")
    accounts = json.loads(DEFAULT_ACCOUNTS.read_text())["accounts"]
    assert {a["username"] for a in accounts} >= catalog.static_users
    for account in accounts:
        for group in account.get("groups", []):
            parsed = parse_group(group)
            if parsed:
                assert parsed[0] in catalog, (account["username"], group)
        # the provider's groups say what the catalog's lists say
        course_groups = {g for g in account.get("groups", []) if parse_group(g)}
        assert course_groups == catalog.static_groups(account["username"]), account["username"]
