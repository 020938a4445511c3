"""CourseOAuthenticator's hooks on their own: usernames, claims -> groups, errors, config.

No hub here (test_auth_oidc runs the whole flow); configure_oidc is tested against the real
development provider.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from tornado import web
from traitlets.config import Config

from dev_idp.launch import start_idp, stop_idp
from hub_ext.authenticator import (
    ClaimError,
    CourseOAuthenticator,
    ProviderUnavailable,
    configure_oidc,
)
from hub_ext.courses import Catalog, CourseCatalog
from hub_ext.roster import RosterStore, parse_roster
from tests.conftest import write_catalog


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


@pytest.fixture
def catalog(tmp_path):
    path = write_catalog(
        tmp_path / "catalog",
        [
            {"id": "ds101", "title": "D", "opens": day(-1), "closes": day(9), "learners": ["lee"]},
            {"id": "stat200", "title": "S", "opens": day(-1), "closes": day(9)},
        ],
    )
    catalog = Catalog.load(path)
    CourseCatalog.clear_instance()
    CourseCatalog.instance().set_catalog(catalog)
    yield catalog
    CourseCatalog.clear_instance()


def make(catalog, **traits) -> CourseOAuthenticator:
    c = Config()
    for name, value in traits.items():
        setattr(c.CourseOAuthenticator, name, value)
    return CourseOAuthenticator(config=c)


def state(**user_info) -> dict:
    return {"oauth_user": user_info}


@pytest.mark.parametrize(
    ("policy", "info", "expected"),
    [
        ("preferred_username", {"preferred_username": "Alice"}, "alice"),
        ("email", {"email": "Alice@Example.edu", "email_verified": True}, "alice@example.edu"),
        ("email_local_part", {"email": "alice@example.edu"}, "alice"),
        ("sub", {"sub": "f3a9-22"}, "f3a9-22"),
        ("claim", {"username": "carol"}, "carol"),
    ],
)
def test_username_policies(catalog, policy, info, expected):
    assert make(catalog, username_policy=policy).user_info_to_username(info) == expected


def test_username_refusals(catalog):
    a = make(catalog, username_policy="email_local_part", email_domains=["example.edu"])
    with pytest.raises(web.HTTPError) as e:
        a.user_info_to_username({"email": "alice@other.org"})
    assert e.value.status_code == 403 and "in example.edu" in e.value.log_message % e.value.args
    with pytest.raises(web.HTTPError):
        a.user_info_to_username({"email": "alice@example.edu", "email_verified": False})
    with pytest.raises(ClaimError) as e:
        make(catalog).user_info_to_username({"sub": "x"})
    assert "'preferred_username'" in e.value.log_message % e.value.args
    with pytest.raises(web.HTTPError) as e:
        make(catalog).user_info_to_username({"preferred_username": "Alice Smith"})
    assert e.value.status_code == 403


async def test_groups_from_claims_catalog_and_rosters(catalog, tmp_path, caplog):
    store = RosterStore(tmp_path / "rosters")
    roster_csv = tmp_path / "r.csv"
    roster_csv.write_text("email,role\nlee@example.edu,teacher\n")
    store.save(parse_roster(roster_csv, catalog=catalog, course="stat200"))
    a = make(
        catalog,
        roster_dir=str(store.directory),
        entitlement_prefixes=["urn:mace:example.edu:"],
        admin_groups={"hub-admins"},
    )
    caplog.set_level(logging.WARNING)
    groups = await a.get_user_groups(
        state(
            preferred_username="lee",
            email="lee@example.edu",
            groups=[
                "urn:mace:example.edu:course:stat200:learner",
                "urn:mace:other.org:course:ds101:teacher",  # another prefix: not ours
                "course:gone:learner",  # unknown course: dropped, one warning
                "hub-admins",  # kept: named in admin_groups
                "library-users",  # dropped: not a course, not configured
            ],
        )
    )
    assert groups == {
        "course:ds101:learner",  # the catalog's list
        "course:stat200:learner",  # the entitlement
        "course:stat200:teacher",  # the roster, by email
        "hub-admins",
    }
    warnings = [r.getMessage() for r in caplog.records if "gone" in r.getMessage()]
    assert warnings == ["Ignoring course:gone:learner of lee: no such course in the catalog"]


async def test_roster_updates_are_seen_and_a_broken_store_keeps_the_last_good(catalog, tmp_path):
    store = RosterStore(tmp_path / "rosters")
    a = make(catalog, roster_dir=str(store.directory))
    assert await a.get_user_groups(state(preferred_username="zed")) == set()
    csv = tmp_path / "r.csv"
    csv.write_text("username,role\nzed,learner\n")
    store.save(parse_roster(csv, catalog=catalog, course="ds101"))
    assert await a.get_user_groups(state(preferred_username="zed")) == {"course:ds101:learner"}
    store.path.write_text("{not json")
    assert await a.get_user_groups(state(preferred_username="zed")) == {"course:ds101:learner"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("course:ds101:learner", "sent the 'groups' claim as a str, not a list of groups"),
        ({"ds101": "learner"}, "as a dict, not a list"),
        (42, "as a int, not a list"),
        (["course:ds101:learner", 7], "sent a int in the 'groups' claim"),
    ],
)
async def test_groups_claim_of_the_wrong_type(catalog, value, message):
    with pytest.raises(ClaimError) as e:
        await make(catalog).get_user_groups(state(preferred_username="x", groups=value))
    assert e.value.status_code == 502
    assert message in e.value.log_message % e.value.args


async def test_missing_claim_and_callable_claims(catalog):
    a = make(catalog)
    assert await a.get_user_groups(state(preferred_username="nobody")) == set()
    b = make(
        catalog,
        course_groups_from_claims=lambda auth, info: [
            f"course:{c}:learner" for c in info["courses"]
        ],
    )
    assert await b.get_user_groups(state(preferred_username="x", courses=["stat200"])) == {
        "course:stat200:learner"
    }


async def test_check_allowed(catalog):
    a = make(catalog, admin_users={"boss"})
    assert await a.check_allowed("x", {"admin": None, "groups": ["course:ds101:learner"]})
    assert not await a.check_allowed("x", {"admin": None, "groups": ["library-users"]})
    assert await a.check_allowed("boss", {"admin": True, "groups": []})
    assert await a.check_allowed("y", {"admin": True, "groups": []})  # admin_groups said so
    assert not await make(catalog, require_enrollment=True).check_allowed(
        "x", {"admin": None, "groups": []}
    )


async def test_unreachable_provider_is_a_503(catalog):
    from tornado.httpclient import HTTPRequest

    from tests.hubtest import free_port

    a = make(catalog)
    with pytest.raises(ProviderUnavailable) as e:
        await a.fetch(HTTPRequest(f"http://127.0.0.1:{free_port()}/token?code=secret-code"))
    assert e.value.status_code == 503
    text = e.value.log_message % e.value.args
    assert "could not be reached" in text and "secret-code" not in text


def test_configure_oidc_from_discovery(tmp_path):
    idp = start_idp(tmp_path / "idp", ["http://127.0.0.1:1/hub/oauth_callback"])
    try:
        c = Config()
        meta = configure_oidc(c, idp.issuer, "course-hub", "s3cret", admin_groups=["hub-admins"])
    finally:
        stop_idp(idp.pid)
    assert meta["issuer"] == idp.issuer
    a = c.CourseOAuthenticator
    assert c.JupyterHub.authenticator_class == "course-oauth"
    assert (a.authorize_url, a.token_url, a.userdata_url) == (
        f"{idp.issuer}/auth",
        f"{idp.issuer}/token",
        f"{idp.issuer}/me",
    )
    assert a.enable_auth_state is True and a.admin_groups == {"hub-admins"}
    # the provider is gone now: a hub configured against it refuses to start, saying why
    with pytest.raises(SystemExit) as e:
        configure_oidc(Config(), idp.issuer, "course-hub", "s3cret", timeout=2)
    assert "Cannot read the OpenID provider's discovery document" in str(e.value)
    assert "s3cret" not in str(e.value)


async def test_failing_provider_is_a_503_but_its_4xx_answers_are_kept(catalog):
    """A real HTTP server on loopback standing in for a provider behind a failing proxy."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tornado.httpclient import HTTPClientError, HTTPRequest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(502 if self.path.startswith("/bad") else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "x"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        a = make(catalog)
        with pytest.raises(ProviderUnavailable):
            await a.fetch(HTTPRequest(f"{base}/bad/token"))
        with pytest.raises(HTTPClientError) as e:  # e.g. an expired token: refresh handles it
            await a.fetch(HTTPRequest(f"{base}/me"))
        assert e.value.code == 401
    finally:
        server.shutdown()
        server.server_close()
