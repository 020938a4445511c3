"""CourseOAuthenticator's hooks on their own: usernames, claims -> groups, errors, config.

No hub here (test_auth_oidc and test_auth_usernames run the whole flow); discovery is
tested against the real development provider, and against a plain HTTP(S) server on
loopback for what that provider cannot do (a private CA, broken documents).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from dev_idp.launch import start_idp, stop_idp
from hub_ext.authenticator import (
    ClaimError,
    CourseOAuthenticator,
    OIDCDiscoveryError,
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


def username_of(a: CourseOAuthenticator, user_info: dict) -> str:
    """The username a login with ``user_info`` gets, through the same stages as
    oauthenticator's ``_token_to_auth_model``: the policy, normalization, update_auth_model."""
    name = a.normalize_username(a.user_info_to_username(user_info))
    model = {"name": name, "admin": None, "auth_state": state(**user_info)}
    return asyncio.run(a.update_auth_model(model))["name"]


def refusal(a: CourseOAuthenticator, user_info: dict) -> web.HTTPError:
    with pytest.raises(web.HTTPError) as e:
        username_of(a, user_info)
    return e.value


def message(e: web.HTTPError) -> str:
    return e.log_message % e.args


@pytest.mark.parametrize(
    ("policy", "info", "expected"),
    [
        ("preferred_username", {"preferred_username": "Alice"}, "alice"),
        ("email", {"email": "Alice@Example.edu", "email_verified": True}, "alice@example.edu"),
        ("email_local_part", {"email": "alice@example.edu", "email_verified": True}, "alice"),
        ("email_local_part", {"email": "bo.b@example.edu", "email_verified": "true"}, "bo.b"),
        ("sub", {"sub": "f3a9-22"}, "f3a9-22"),
        ("claim", {"username": "carol"}, "carol"),
    ],
)
def test_username_policies(catalog, policy, info, expected):
    assert username_of(make(catalog, username_policy=policy), info) == expected


def test_username_refusals(catalog):
    a = make(catalog, username_policy="email_local_part", email_domains=["example.edu"])
    e = refusal(a, {"email": "alice@other.org", "email_verified": True})
    assert e.status_code == 403 and "in example.edu" in message(e)
    e = refusal(a, {"email": "alice@example.edu", "email_verified": False})
    assert e.status_code == 403 and "alice@example.edu is not verified" in message(e)
    with pytest.raises(ClaimError) as e:
        make(catalog).user_info_to_username({"sub": "x"})
    assert "'preferred_username'" in message(e.value)
    e = refusal(make(catalog), {"preferred_username": "Alice Smith"})
    assert e.status_code == 403 and "'alice smith' cannot be used as a username" in message(e)


@pytest.mark.parametrize("policy", ["email", "email_local_part"])
def test_an_email_without_email_verified_is_not_an_identity(catalog, policy):
    """The takeover: alice@evil.example, never verified, must not become alice."""
    a = make(catalog, username_policy=policy)
    e = refusal(a, {"email": "alice@evil.example"})
    assert e.status_code == 403
    assert "Your email address alice@evil.example is not verified" in message(e)
    assert a._verified_emails({"email": "alice@evil.example"}) == []  # nor for rosters


def test_trust_unverified_email_is_an_explicit_opt_in(catalog, caplog):
    caplog.set_level(logging.WARNING)
    a = make(catalog, username_policy="email_local_part", trust_unverified_email=True)
    assert "trust_unverified_email is True" in caplog.text
    assert username_of(a, {"email": "alice@example.edu"}) == "alice"
    # an address the provider says is unverified stays refused
    e = refusal(a, {"email": "alice@example.edu", "email_verified": False})
    assert "is not verified" in message(e)
    assert make(catalog).trust_unverified_email is False


@pytest.mark.parametrize(
    ("policy", "info", "name"),
    [
        # the claim policy used to skip the pattern: a homograph of alice, a space, a colon
        ("claim", {"username": "\u0430lice"}, "\u0430lice"),
        ("claim", {"username": "Ops Team"}, "ops team"),
        ("claim", {"username": "x:ds101"}, "x:ds101"),
        ("claim", {"username": "-rf"}, "-rf"),
        ("claim", {"username": "a" * 65}, "a" * 65),
        ("sub", {"sub": "auth0|5f3a"}, "auth0|5f3a"),
        ("preferred_username", {"preferred_username": "ann@example.edu"}, "ann@example.edu"),
        ("email", {"email": "a b@example.edu", "email_verified": True}, "a b@example.edu"),
    ],
)
def test_every_policy_passes_the_username_pattern(catalog, policy, name, info):
    e = refusal(make(catalog, username_policy=policy), info)
    assert e.status_code == 403
    assert f"{name!r} cannot be used as a username on this hub" in message(e)


def test_username_pattern_is_jupyterhubs_own(catalog):
    a = make(catalog)
    assert a.username_pattern == r"^[a-z0-9][a-z0-9._-]{0,63}$"
    assert a.validate_username("ann.lee_2-b") and not a.validate_username("ann@example.edu")
    assert make(catalog, username_policy="email").validate_username("ann+x@example.edu")
    # an institution's own pattern replaces the default, and names it in the refusal
    b = make(catalog, username_pattern=r"^[a-z]{2,8}[0-9]{0,4}$")
    assert username_of(b, {"preferred_username": "abc12"}) == "abc12"
    e = refusal(b, {"preferred_username": "ann.lee"})
    assert "matching ^[a-z]{2,8}[0-9]{0,4}$" in message(e)


def test_email_local_part_without_email_domains_warns_at_start(catalog, caplog):
    caplog.set_level(logging.WARNING)
    make(catalog, username_policy="email_local_part").check_allow_config()
    assert "username_policy 'email_local_part' without email_domains" in caplog.text
    caplog.clear()
    make(
        catalog, username_policy="email_local_part", email_domains=["example.edu"]
    ).check_allow_config()
    assert "without email_domains" not in caplog.text


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
            email_verified=True,
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


async def test_missing_claim_and_callable_claims(catalog, caplog):
    a = make(catalog)
    assert await a.get_user_groups(state(preferred_username="nobody")) == set()

    # oauthenticator's own auth_state_groups_key, as a (maybe async) callable of the auth state
    async def courses(auth_state):
        return [f"course:{c}:learner" for c in auth_state["oauth_user"]["courses"]]

    b = make(catalog, auth_state_groups_key=courses)
    assert await b.get_user_groups(state(preferred_username="x", courses=["stat200"])) == {
        "course:stat200:learner"
    }
    # the earlier trait for the same still works, with a deprecation warning
    caplog.set_level(logging.WARNING)
    d = make(
        catalog,
        course_groups_from_claims=lambda auth, info: [
            f"course:{c}:learner" for c in info["courses"]
        ],
    )
    assert "course_groups_from_claims is deprecated" in caplog.text
    assert await d.get_user_groups(state(preferred_username="x", courses=["stat200"])) == {
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


def authenticator_from(c: Config) -> CourseOAuthenticator:
    return CourseOAuthenticator(config=c)


def test_configure_oidc_from_discovery(tmp_path, catalog):
    idp = start_idp(tmp_path / "idp", ["http://127.0.0.1:1/hub/oauth_callback"])
    try:
        c = Config()
        configure_oidc(c, idp.issuer, "course-hub", "s3cret", admin_groups=["hub-admins"])
        assert c.JupyterHub.authenticator_class == "course-oauth"
        a = authenticator_from(c)
        assert a.oidc_configuration["issuer"] == idp.issuer
        assert (a.authorize_url, a.token_url, a.userdata_url) == (
            f"{idp.issuer}/auth",
            f"{idp.issuer}/token",
            f"{idp.issuer}/me",
        )
        # logging out of the hub ends the session at the provider too (RP-initiated logout)
        assert a.logout_redirect_url == f"{idp.issuer}/session/end?client_id=course-hub"
        assert a.enable_auth_state is True and a.admin_groups == {"hub-admins"}
        # set explicitly, an endpoint wins over the discovered one
        c.CourseOAuthenticator.logout_redirect_url = ""
        assert authenticator_from(c).logout_redirect_url == ""
    finally:
        stop_idp(idp.pid)
    # the provider is gone now: reading its endpoints is a clear error, not an exit
    c = Config()
    configure_oidc(c, idp.issuer, "course-hub", "s3cret", timeout=2)
    with pytest.raises(OIDCDiscoveryError) as e:
        authenticator_from(c).authorize_url  # noqa: B018
    text = str(e.value)
    assert (
        f"Cannot read the OpenID provider's discovery document at {idp.issuer}/.well-known" in text
    )
    assert "Connection refused" in text
    assert "s3cret" not in text


class _Discovery(BaseHTTPRequestHandler):
    """Serves ``server.document`` (JSON) at the discovery path."""

    def do_GET(self):
        body = self.server.document
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def discovery_server(document, status=200, tls=None):
    """A real HTTP(S) server on loopback standing in for a provider's discovery endpoint
    (the development provider does not speak TLS, nor serve broken documents)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    server.status = status
    scheme = "http"
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    issuer = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    server.document = document(issuer) if callable(document) else document
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def good_document(issuer):
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    }


@pytest.mark.parametrize(
    ("document", "status", "traits", "expected"),
    [
        (good_document, 500, {}, "it answered HTTP 500"),
        (b"<html>not here</html>", 200, {}, "the answer is not JSON"),
        (b"[]", 200, {}, "the answer is not a JSON object"),
        (
            lambda i: {**good_document(i), "issuer": "https://elsewhere.example"},
            200,
            {},
            "announces the issuer 'https://elsewhere.example'",
        ),
        (
            lambda i: {k: v for k, v in good_document(i).items() if k != "token_endpoint"},
            200,
            {},
            "does not announce token_endpoint",
        ),
        (
            lambda i: {
                **good_document(i),
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            },
            200,
            {},
            "does not accept client_secret_post (it offers private_key_jwt); set "
            "c.CourseOAuthenticator.basic_auth = True",
        ),
        (
            lambda i: {
                **good_document(i),
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            },
            200,
            {"basic_auth": True},
            "does not accept client_secret_basic",
        ),
    ],
)
def test_unusable_discovery_document_is_a_clear_error(catalog, document, status, traits, expected):
    with discovery_server(document, status) as issuer:
        a = make(catalog, oidc_issuer=issuer + "/", **traits)
        with pytest.raises(OIDCDiscoveryError) as e:
            a.token_url  # noqa: B018
    assert expected in str(e.value)
    assert issuer in str(e.value)


def test_discovery_uses_oauthenticators_request_settings(catalog, tmp_path):
    """A provider behind a private CA: found with ``http_request_kwargs = {"ca_certs": ...}``,
    refused (saying why) without it."""
    ca, cert, key = make_private_ca(tmp_path)
    with discovery_server(good_document, tls=(cert, key)) as issuer:
        with pytest.raises(OIDCDiscoveryError) as e:
            make(catalog, oidc_issuer=issuer).authorize_url  # noqa: B018
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
        a = make(catalog, oidc_issuer=issuer, http_request_kwargs={"ca_certs": str(ca)})
        assert a.authorize_url == f"{issuer}/authorize"
        assert a.userdata_url == f"{issuer}/userinfo"
        assert a.logout_redirect_url == ""  # no end_session_endpoint announced
        # validate_server_cert = False (oauthenticator's switch) is honoured as well
        assert make(catalog, oidc_issuer=issuer, validate_server_cert=False).token_url == (
            f"{issuer}/token"
        )


def make_private_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 that it signed (with the openssl command)."""
    run = functools.partial(subprocess.run, check=True, capture_output=True, cwd=directory)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=test private CA", "-keyout", "ca.key", "-out", "ca.pem"])  # fmt: skip
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", "idp.key", "-out", "idp.csr"])  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName = IP:127.0.0.1\n")
    run(["openssl", "x509", "-req", "-in", "idp.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "idp.pem"])  # fmt: skip
    return directory / "ca.pem", directory / "idp.pem", directory / "idp.key"


def test_issuer_must_be_a_url(catalog):
    with pytest.raises(TraitError, match="must be an https:// URL"):
        make(catalog, oidc_issuer="login.example.edu")
    assert make(catalog).oidc_configuration == {}  # no issuer: no discovery


async def test_failing_provider_is_a_503_but_its_4xx_answers_are_kept(catalog):
    """A real HTTP server on loopback standing in for a provider behind a failing proxy."""
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
