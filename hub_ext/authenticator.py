"""Course authenticators: who may log in, and which course groups they belong to.

Course membership is expressed as JupyterHub groups (``course:<id>:learner`` and
``course:<id>:teacher``), kept in sync at every login (and refresh) by JupyterHub's
``manage_groups``. :class:`CourseGroupsMixin` holds the enrollment-to-groups logic that
every course authenticator shares: the catalog's static lists, LMS rosters (the catalog's
``rosters:`` files and those imported with ``hub-ext import-roster``) and whatever the
identity provider claims. The authenticators differ only in where identities come from.

- :class:`CourseOAuthenticator`: the institution's OpenID Connect / OAuth2 provider
  (oauthenticator's ``GenericOAuthenticator``), set up from its issuer URL
  (``oidc_issuer``, or :func:`configure_oidc`).
- :class:`CourseDevAuthenticator`: a development login (username + shared password) for
  the demo and tests; groups come from the catalog's static rosters.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import reduce
from inspect import isawaitable
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.auth import Authenticator
from jupyterhub.utils import maybe_future
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClient, HTTPClientError, HTTPRequest
from tornado.httputil import url_concat
from traitlets import (
    Bool,
    Callable,
    CaselessStrEnum,
    Dict,
    List,
    TraitError,
    Unicode,
    default,
    observe,
    validate,
)
from traitlets.config import LoggingConfigurable

from .courses import CourseCatalog, parse_group
from .roster import (
    RosterError,
    RosterIndex,
    RosterStore,
    default_roster_dir,
    load_catalog_rosters,
)

__all__ = [
    "ClaimError",
    "CourseDevAuthenticator",
    "CourseGroupsMixin",
    "CourseOAuthenticator",
    "OIDCDiscoveryError",
    "ProviderUnavailable",
    "configure_oidc",
]


class CourseGroupsMixin(LoggingConfigurable):
    """Derive a user's course groups from the catalog, the rosters and the identity provider.

    Mix in before an ``Authenticator`` subclass. ``manage_groups`` is on: the groups
    returned in the auth model replace the user's groups at every login.
    """

    require_enrollment = Bool(
        True,
        help="""Only let in users enrolled in at least one course (or admins).

        Default: True. Example: ``c.CourseOAuthenticator.require_enrollment = False``
        """,
    ).tag(config=True, allow_config=True)

    roster_dir = Unicode(
        help="""Directory of the rosters imported with ``hub-ext import-roster``
        (its ``rosters.json``). Read at each login and refresh (re-read when it changes).

        Default: the ``HUB_EXT_ROSTER_DIR`` environment variable, else ``rosters`` in the
        hub's working directory: where ``hub-ext import-roster`` stores them by default
        (:func:`hub_ext.roster.default_roster_dir`). Empty: only the catalog's own lists
        and ``rosters:`` files.
        Example: ``c.CourseOAuthenticator.roster_dir = "/srv/jupyterhub/rosters"``
        """,
    ).tag(config=True)

    @default("roster_dir")
    def _default_roster_dir(self):
        return default_roster_dir()

    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    @property
    def catalog(self):
        return CourseCatalog.instance(config=self.config).catalog

    _roster_key = None
    _roster_index = None

    def _roster_files(self) -> list[Path]:
        files = [p for c in self.catalog.values() for p in c.rosters]
        if self.roster_dir:
            files.append(RosterStore(self.roster_dir).path)
        return files

    @property
    def rosters(self) -> RosterIndex:
        """Everyone the rosters enroll; rebuilt when a roster file changes.

        A roster that has become unreadable or invalid is not applied: the last good
        rosters stay in use and the problem is logged.
        """
        files = self._roster_files()
        key = tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in files)
        if key != self._roster_key:
            try:
                entries = [e for r in load_catalog_rosters(self.catalog) for e in r.entries]
                if self.roster_dir:
                    entries += RosterStore(self.roster_dir).entries()
            except RosterError as e:
                self.log.error("Rosters not reloaded, keeping the previous ones:\n%s", e)
                if self._roster_index is None:
                    self._roster_index = RosterIndex()
                self._roster_key = key
                return self._roster_index
            self._roster_index = RosterIndex.build(entries)
            self._roster_key = key
        return self._roster_index

    def course_groups(
        self, username: str, claimed: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> set[str]:
        """The course groups of ``username``: the catalog's lists, the rosters, and ``claimed``.

        ``claimed`` are group names the identity provider asserts; ``emails`` are the user's
        verified addresses, matched against roster rows that give an email, not a username.
        Groups of courses not in the catalog are dropped with one warning.
        """
        groups = set(self.catalog.static_groups(username))
        groups |= self.rosters.groups_for(username, emails)
        unknown = []
        for name in claimed:
            parsed = parse_group(name)
            if parsed is None:
                continue
            if parsed[0] not in self.catalog:
                unknown.append(name)
                continue
            groups.add(name)
        if unknown:
            self.log.warning(
                "Ignoring %s of %s: no such course in the catalog", ", ".join(unknown), username
            )
        return groups

    async def check_allowed(self, username, authentication=None):
        if await maybe_future(super().check_allowed(username, authentication)):
            return True
        if username in self.admin_users:
            return True
        if not self.require_enrollment:
            return False
        groups = (authentication or {}).get("groups") or []
        if any(parse_group(g) for g in groups):
            return True
        self.log.warning("Refusing %s: not enrolled in any course", username)
        return False


class CourseDevAuthenticator(CourseGroupsMixin, Authenticator):
    """A development login: any name from the catalog's rosters, with one shared password.

    For the demo and tests only. Course groups come from the catalog's ``learners`` and
    ``teachers`` lists (and ``admin_users`` may log in too).
    """

    password = Unicode(
        help="""The one password every development account logs in with.

        Required (the hub refuses every login while it is empty).
        Example: ``c.CourseDevAuthenticator.password = "demo-password"``
        """,
    ).tag(config=True)

    @default("allow_all")
    def _default_allow_all(self):
        # check_allowed decides: enrolled users and admins
        return False

    def check_allow_config(self):
        super().check_allow_config()
        self.log.warning(
            "Using %s: a development login, not for production", self.__class__.__name__
        )

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        if not self.password or data.get("password") != self.password:
            return None
        if username not in self.catalog.static_users and username not in self.admin_users:
            self.log.warning("Refusing %s: not in the catalog's rosters", username)
            return None
        return {"name": username, "groups": sorted(self.course_groups(username))}


# --------------------------------------------------------------------------- OpenID Connect


class ProviderUnavailable(web.HTTPError):
    """The identity provider could not be reached (connection refused, timeout, DNS)."""

    def __init__(self, what: str):
        super().__init__(
            503,
            "The login service could not be reached (%s). Please try again in a few minutes; "
            "if it keeps failing, tell the hub's administrators.",
            what,
            reason="Login service unavailable",
        )


class ClaimError(web.HTTPError):
    """The identity provider sent a claim the hub cannot use (e.g. groups that are not a list)."""

    def __init__(self, message: str):
        super().__init__(502, "%s", message, reason="Unusable answer from the login service")


class OIDCDiscoveryError(ValueError):
    """The provider's discovery document (``oidc_issuer``) could not be read or is unusable.

    The message names the issuer and what failed; it never holds a secret.
    """


class _UnusableEmail(Exception):
    """Why a user's email address cannot identify them (a sentence for the user)."""


def _url_without_query(url: str) -> str:
    return url.split("?", 1)[0]


#: The default ``username_pattern`` of :class:`CourseOAuthenticator`: usernames that are
#: also safe, as they are, in paths, server, container and volume names and labels.
SAFE_USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
#: The default with ``username_policy = "email"``: one whole (lowercase) address.
SAFE_EMAIL_USERNAME_PATTERN = r"^(?=.{3,128}$)[a-z0-9][a-z0-9._+-]*@[a-z0-9][a-z0-9.-]*[a-z0-9]$"
_PATTERN_HINTS = {
    SAFE_USERNAME_PATTERN: "lowercase letters, digits and . _ - only, starting with a letter "
    "or digit, at most 64 characters",
    SAFE_EMAIL_USERNAME_PATTERN: "an email address of lowercase letters, digits and . _ + - "
    "only, at most 128 characters",
}


class CourseOAuthenticator(CourseGroupsMixin, GenericOAuthenticator):
    """Log in through the institution's OpenID Connect / OAuth2 provider.

    A ``GenericOAuthenticator`` (authorization code + PKCE, ``client_secret_post``) whose
    documented hooks turn the provider's claims into course groups:

    - :attr:`oidc_issuer`: the endpoints (``authorize_url``, ``token_url``,
      ``userdata_url``, ``logout_redirect_url``) default to those of the provider's
      discovery document, read once at start with oauthenticator's request settings
      (``http_request_kwargs``, ``validate_server_cert``);
    - :meth:`user_info_to_username`: the username, by :attr:`username_policy`; email-based
      policies need an address the provider has verified;
    - :meth:`update_auth_model`: the username must match ``username_pattern`` (JupyterHub's
      own check; a safe default here), refused with a page that says why;
    - :meth:`get_user_groups`: ``course:<id>:<role>`` groups from the claim at
      oauthenticator's ``auth_state_groups_key`` (a list of group names, or of eduPerson
      entitlement URNs under one of :attr:`entitlement_prefixes`), merged with the rosters
      and the catalog's lists; claimed groups named in ``admin_groups`` or
      ``allowed_groups`` are kept, so oauthenticator's own admin and allow rules apply;
    - :meth:`check_allowed`: oauthenticator's rules (``admin_users``, ``admin_groups``,
      ``allowed_users``, ``allowed_groups``...), else enrolled in at least one course;
    - :meth:`refresh_user`: with ``enable_auth_state``, every ``auth_refresh_age`` seconds
      (and before each spawn) the claims are fetched again, so someone dropped from a
      course at the provider loses it then.

    Example (``jupyterhub_config.py``)::

        c.JupyterHub.authenticator_class = "course-oauth"
        c.CourseOAuthenticator.oidc_issuer = "https://login.example.edu/realms/uni"
        c.CourseOAuthenticator.client_id = "course-hub"
        c.CourseOAuthenticator.client_secret = os.environ["OIDC_CLIENT_SECRET"]
        c.CourseOAuthenticator.enable_auth_state = True
        c.CourseOAuthenticator.admin_groups = {"hub-admins"}

    :func:`configure_oidc` sets the same in one call.
    """

    @default("login_service")
    def _login_service_default(self):
        return os.environ.get("LOGIN_SERVICE", "your institution's account")

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email", "groups"]

    @default("allow_all")
    def _default_allow_all(self):
        # check_allowed decides: enrolled users and admins
        return False

    @default("custom_403_message")
    def _default_403(self):
        return (
            "You are not enrolled in any course on this hub. If you should be, ask your "
            "teacher to check the course roster."
        )

    # ------------------------------------------------------------------ the provider

    oidc_issuer = Unicode(
        help="""The OpenID Connect issuer URL of the institution's provider.

        When set, the provider's discovery document
        (``<issuer>/.well-known/openid-configuration``) is read once, when the hub starts,
        with oauthenticator's request settings (``http_request_kwargs``, e.g. a private CA
        with ``{"ca_certs": "/etc/ssl/uni-ca.pem"}``, and ``validate_server_cert``), and gives
        the defaults of ``authorize_url``, ``token_url``, ``userdata_url`` and
        ``logout_redirect_url`` (any of them set explicitly wins). The hub does not start,
        saying why, if the document cannot be read, announces another issuer, lacks an
        endpoint, or does not accept the client authentication in use (``basic_auth``).

        Default: ``""`` (no discovery: set the endpoints yourself).
        Example: ``c.CourseOAuthenticator.oidc_issuer = "https://login.example.edu/realms/uni"``
        """,
    ).tag(config=True)

    @validate("oidc_issuer")
    def _validate_oidc_issuer(self, proposal):
        issuer = proposal.value.strip().rstrip("/")
        if not issuer:
            return ""
        parsed = urlparse(issuer)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise TraitError(
                f"CourseOAuthenticator.oidc_issuer must be an https:// URL, not {proposal.value!r}"
            )
        if parsed.query or parsed.fragment:
            raise TraitError(
                f"CourseOAuthenticator.oidc_issuer {proposal.value!r} must not have a query "
                "or fragment (OpenID Connect Discovery 1.0, section 2)"
            )
        return issuer

    @observe("oidc_issuer")
    def _warn_plain_http_issuer(self, change):
        parsed = urlparse(change.new)
        if parsed.scheme == "http" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            self.log.warning(
                "CourseOAuthenticator.oidc_issuer %s is plain http: the client secret, codes "
                "and tokens would cross the network unencrypted. Use https.",
                change.new,
            )

    oidc_configuration = Dict(
        help="""The provider's OpenID Connect discovery document, read from
        :attr:`oidc_issuer` (not configurable: set :attr:`oidc_issuer`). ``{}`` without one.

        Reading it raises :class:`OIDCDiscoveryError` naming the issuer and what failed.
        """,
    )

    @default("oidc_configuration")
    def _read_oidc_configuration(self):
        if not self.oidc_issuer:
            return {}
        # traitlets does not run @validate on a dynamic default: check it here
        return self._check_discovery_document(self._fetch_discovery_document())

    def _fetch_discovery_document(self) -> dict:
        url = f"{self.oidc_issuer}/.well-known/openid-configuration"
        kwargs = {
            "headers": {"Accept": "application/json", "User-Agent": "JupyterHub"},
            **self.http_request_kwargs,
            "validate_cert": self.validate_server_cert,
        }

        # As oauthenticator's OpenShiftOAuthenticator reads its server metadata: at start, so
        # not with the async client; Tornado's HTTPClient (same HTTPRequest options) runs its
        # own event loop, in a thread of its own (tornado#2325).
        def fetch():
            client = HTTPClient()
            try:
                return client.fetch(HTTPRequest(url, **kwargs))
            finally:
                client.close()

        def fail(what: str):
            return OIDCDiscoveryError(
                f"Cannot read the OpenID provider's discovery document at {url}: {what}. "
                "Check c.CourseOAuthenticator.oidc_issuer, that the provider is up and "
                "reachable from the hub, and (for a private CA) "
                "c.CourseOAuthenticator.http_request_kwargs."
            )

        with ThreadPoolExecutor(1) as pool:
            try:
                response = pool.submit(fetch).result()
            except HTTPClientError as e:
                if e.code == 599:  # no HTTP answer: timeout, connection closed
                    raise fail(f"no answer ({e.message})") from None
                raise fail(f"it answered HTTP {e.code}") from None
            except OSError as e:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
                raise fail(str(e) or type(e).__name__) from None
        try:
            document = json.loads(response.body)
        except ValueError:
            raise fail("the answer is not JSON") from None
        if not isinstance(document, dict):
            raise fail("the answer is not a JSON object")
        return document

    @validate("oidc_configuration")
    def _validate_oidc_configuration(self, proposal):
        return self._check_discovery_document(proposal.value)

    def _check_discovery_document(self, document: dict) -> dict:
        """The document, if the hub can use it; else :class:`OIDCDiscoveryError` saying why."""
        if not document:
            return document
        where = f"The OpenID provider at {self.oidc_issuer}"
        announced = str(document.get("issuer", "")).rstrip("/")
        if announced != self.oidc_issuer:
            raise OIDCDiscoveryError(
                f"{where} announces the issuer {document.get('issuer')!r} in its discovery "
                "document; the two must be the same (OpenID Connect Discovery 1.0, 4.3). "
                "Check c.CourseOAuthenticator.oidc_issuer."
            )
        needed = ["authorization_endpoint", "token_endpoint"]
        if not self.userdata_from_id_token:
            needed.append("userinfo_endpoint")
        missing = [k for k in needed if not isinstance(document.get(k), str) or not document[k]]
        if missing:
            raise OIDCDiscoveryError(
                f"{where} does not announce {', '.join(missing)} in its discovery document."
            )
        method = "client_secret_basic" if self.basic_auth else "client_secret_post"
        # the default when not announced: OpenID Connect Discovery 1.0, section 3
        methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if method not in methods:
            other = "False" if self.basic_auth else "True"
            raise OIDCDiscoveryError(
                f"{where} does not accept {method} (it offers {', '.join(methods)}); set "
                f"c.CourseOAuthenticator.basic_auth = {other} for the other method."
            )
        return document

    def _discovered(self, key: str) -> str:
        return self.oidc_configuration.get(key, "") if self.oidc_issuer else ""

    @default("authorize_url")
    def _authorize_url_default(self):
        return self._discovered("authorization_endpoint") or super()._authorize_url_default()

    @default("token_url")
    def _token_url_default(self):
        return self._discovered("token_endpoint") or super()._token_url_default()

    @default("userdata_url")
    def _userdata_url_default(self):
        if self.userdata_from_id_token:
            return ""
        return self._discovered("userinfo_endpoint") or super()._userdata_url_default()

    @default("logout_redirect_url")
    def _logout_redirect_url_default(self):
        # ``OAUTH_LOGOUT_REDIRECT_URL`` first (oauthenticator's), then RP-initiated logout:
        # logging out of the hub also ends the session at the provider, so the next person
        # at a shared (lab) computer is not let in as the previous one.
        end_session = self._discovered("end_session_endpoint")
        if end_session and self.client_id:
            end_session = url_concat(end_session, {"client_id": self.client_id})
        return super()._logout_redirect_url_default() or end_session

    def check_allow_config(self):
        """At hub start: read the provider's discovery document, warn about risky settings.

        A provider that cannot be used stops the hub here with one clear log line (the
        issuer and what failed), the way JupyterHub stops for its own configuration errors.
        """
        super().check_allow_config()
        if self.oidc_issuer:
            try:
                self.oidc_configuration  # noqa: B018 (read once, validated)
            except OIDCDiscoveryError as e:
                self.log.critical("%s The hub will not start.", e)
                raise SystemExit(1) from None
            self.log.info(
                "OpenID provider %s: authorize %s, token %s, userinfo %s",
                self.oidc_issuer,
                self.authorize_url,
                self.token_url,
                self.userdata_url or "(from the id token)",
            )
        if self.username_policy == "email_local_part" and not self.email_domains:
            self.log.warning(
                "username_policy 'email_local_part' without email_domains: alice@example.edu "
                "and alice@other.org would be one hub user. Set "
                "c.CourseOAuthenticator.email_domains to your institution's own domain(s)."
            )

    async def fetch(self, req, label="fetching", parse_json=True, **kwargs):
        """As oauthenticator's, with a provider that cannot be reached or fails (5xx)
        turned into a 503 page that says so, instead of a 500 page."""
        try:
            return await super().fetch(req, label=label, parse_json=parse_json, **kwargs)
        except HTTPClientError as e:
            # 599: timeout or connection closed, no HTTP answer at all; 5xx: the provider
            # (or a proxy in front of it) is failing. 4xx are answers: oauthenticator's.
            if e.code == 599 or e.code >= 500:
                raise ProviderUnavailable(_url_without_query(req.url)) from None
            raise
        except OSError as e:  # connection refused, unreachable, DNS
            self.log.error(
                "Cannot reach the identity provider at %s: %s", _url_without_query(req.url), e
            )
            raise ProviderUnavailable(_url_without_query(req.url)) from None

    async def refresh_user(self, user, handler=None, **kwargs):
        """Refresh the tokens and course groups; keep the current ones if the provider fails.

        A provider that is down, or that answers with unusable claims, must not remove
        everyone's courses: the user keeps their current groups (nothing half-applied) and
        the next refresh tries again.
        """
        try:
            return await super().refresh_user(user, handler, **kwargs)
        except (ProviderUnavailable, ClaimError) as e:
            self.log.warning("Keeping %s's current groups: %s", user.name, e.log_message % e.args)
            return True

    # ------------------------------------------------------------------ username

    username_policy = CaselessStrEnum(
        ["preferred_username", "email_local_part", "email", "sub", "claim"],
        default_value="preferred_username",
        help="""How the hub username is made from the provider's claims.

        - ``preferred_username`` (default): readable, but the provider may let people change
          it or re-assign it to someone else later: the new holder would get the old
          holder's hub account and work. Use it when the provider guarantees it is stable
          and unique (most institutional directories do for the login name).
        - ``email_local_part``: ``alice`` from ``alice@example.edu``. Collides across
          domains (``alice@example.edu`` and ``alice@other.org`` are one hub user): only
          with :attr:`email_domains` set to the institution's own domain (the hub warns at
          start without it).
        - ``email``: the whole address: unique while addresses are not re-assigned.
        - ``sub``: the provider's subject identifier: stable and unique, but opaque.
        - ``claim``: oauthenticator's own ``username_claim`` (a claim name or callable).

        Email-based policies take only an address the provider has verified
        (``email_verified: true``; see :attr:`trust_unverified_email`) and, with
        :attr:`email_domains`, in one of those domains; any other login is refused with a
        page that says why. Whatever the policy, the result is lowercased (and mapped by
        ``username_map``) and must match JupyterHub's ``username_pattern``, whose default
        here is :data:`SAFE_USERNAME_PATTERN` (``^[a-z0-9][a-z0-9._-]{0,63}$``; with
        ``email``, :data:`SAFE_EMAIL_USERNAME_PATTERN`), safe in paths and in server,
        container and volume names; a login whose name does not match is refused with a
        page that names it. Default: ``"preferred_username"``.
        Example: ``c.CourseOAuthenticator.username_policy = "email_local_part"``
        """,
    ).tag(config=True)

    email_domains = List(
        Unicode(),
        help="""The email domains accepted for email-based usernames and roster matching.

        An address in another domain is refused as a username (with an email-based
        :attr:`username_policy`) and matches no roster row.
        Default: ``[]`` (any domain). Example:
        ``c.CourseOAuthenticator.email_domains = ["example.edu", "students.example.edu"]``
        """,
    ).tag(config=True)

    trust_unverified_email = Bool(
        False,
        help="""Treat an email address that comes without an ``email_verified`` claim as
        verified.

        By default an address identifies someone (as an email-based username, or to match
        a roster row) only when the provider says ``email_verified: true``: where people
        can set their own address at the provider (self-service profiles, linked social
        accounts), anyone could otherwise claim a colleague's address and log in to that
        colleague's hub account. Set True only if your provider never sends
        ``email_verified`` *and* every address it sends was assigned by the institution
        (e.g. the directory's ``mail`` attribute). An address marked
        ``email_verified: false`` is refused either way. The hub warns at start when set.

        Default: False. Example: ``c.CourseOAuthenticator.trust_unverified_email = True``
        """,
    ).tag(config=True)

    @observe("trust_unverified_email")
    def _warn_trust_unverified_email(self, change):
        if change.new:
            self.log.warning(
                "CourseOAuthenticator.trust_unverified_email is True: email addresses the "
                "provider has not marked verified are trusted as usernames and for rosters. "
                "Anyone who can choose their own address at the provider can then log in as "
                "the owner of that address. Keep it only if the provider never sends "
                "email_verified and every address it sends is assigned by the institution."
            )

    @default("username_pattern")
    def _default_username_pattern(self):
        if self.username_policy == "email":
            return SAFE_EMAIL_USERNAME_PATTERN
        return SAFE_USERNAME_PATTERN

    @default("username_regex")
    def _default_username_regex(self):
        # JupyterHub keeps username_regex in step with username_pattern by an observer,
        # which a default value does not trigger
        return re.compile(self.username_pattern) if self.username_pattern else None

    def _usable_email(self, user_info: dict) -> str:
        """The user's address, lowercased, if it may identify them; else :class:`_UnusableEmail`."""
        email = user_info.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise _UnusableEmail(
                "The login service did not send your email address, which this hub uses as "
                "your username (is the 'email' scope granted?)."
            )
        email = email.strip().lower()
        verified = user_info.get("email_verified")
        if isinstance(verified, str):  # some providers send "true"
            verified = {"true": True, "false": False}.get(verified.lower())
        if verified is not True and not (verified is None and self.trust_unverified_email):
            raise _UnusableEmail(
                f"Your email address {email} is not verified by the login service, so this "
                "hub cannot use it to recognise you. Verify it at the login service, then "
                "log in again."
            )
        domain = email.rsplit("@", 1)[1]
        if self.email_domains and domain not in {d.lower() for d in self.email_domains}:
            raise _UnusableEmail(
                f"Your email address {email} is not in {', '.join(self.email_domains)}, "
                "the domain(s) this hub accepts."
            )
        return email

    def _verified_emails(self, user_info: dict) -> list[str]:
        try:
            return [self._usable_email(user_info)]
        except _UnusableEmail:
            return []

    def user_info_to_username(self, user_info):
        policy = self.username_policy
        if policy in ("email", "email_local_part"):
            try:
                email = self._usable_email(user_info)
            except _UnusableEmail as e:
                raise web.HTTPError(403, "%s", str(e)) from None
            username = email if policy == "email" else email.split("@", 1)[0]
        elif policy == "claim":
            try:
                username = super().user_info_to_username(user_info)
            except ValueError:
                username = None
            policy = self.username_claim if isinstance(self.username_claim, str) else policy
        else:
            username = user_info.get(policy)
        if not isinstance(username, str) or not username:
            raise ClaimError(
                f"The login service did not send the {policy!r} claim this hub uses as "
                "the username (is the 'profile' scope granted?)."
            )
        return username.lower()

    async def update_auth_model(self, auth_model):
        """Refuse, with a page that says why, a username ``username_pattern`` does not allow.

        JupyterHub checks the pattern too, after :meth:`check_allowed`, but refuses with
        the generic "not allowed" page; this check names the problem, before any group
        is derived.
        """
        auth_model = await super().update_auth_model(auth_model)
        username = auth_model["name"]
        if not self.validate_username(username):
            source = self.username_policy
            if source == "claim" and isinstance(self.username_claim, str):
                source = self.username_claim
            hint = _PATTERN_HINTS.get(self.username_pattern, f"matching {self.username_pattern}")
            self.log.warning(
                "Refusing the username %r: it does not match username_pattern", username
            )
            raise web.HTTPError(
                403,
                "Your %s %r cannot be used as a username on this hub (%s). Ask the hub's "
                "administrators.",
                source,
                username,
                hint,
            )
        return auth_model

    # ------------------------------------------------------------------ groups

    entitlement_prefixes = List(
        Unicode(),
        help="""Prefixes of eduPerson entitlement URNs that carry course groups.

        With ``["urn:mace:example.edu:"]``, the claimed value
        ``urn:mace:example.edu:course:ds101:learner`` means the group
        ``course:ds101:learner``. Plain ``course:<id>:<role>`` values are always understood.
        Point ``auth_state_groups_key`` at the claim (e.g.
        ``"oauth_user.eduperson_entitlement"``). Default: ``[]``.
        Example: ``c.CourseOAuthenticator.entitlement_prefixes = ["urn:mace:example.edu:"]``
        """,
    ).tag(config=True)

    course_groups_from_claims = Callable(
        None,
        allow_none=True,
        help="""Deprecated: set oauthenticator's ``auth_state_groups_key`` to a callable.

        ``f(authenticator, user_info)`` returning course group names; kept working by
        setting ``auth_state_groups_key`` to ``lambda auth_state: f(authenticator,
        auth_state["oauth_user"])``. Use instead, e.g.:
        ``c.CourseOAuthenticator.auth_state_groups_key = lambda s: [
        f"course:{c}:learner" for c in s["oauth_user"].get("courses", [])]``
        """,
    ).tag(config=True)

    @observe("course_groups_from_claims")
    def _course_groups_from_claims_changed(self, change):
        f = change.new
        if f is None:
            return
        self.log.warning(
            "CourseOAuthenticator.course_groups_from_claims is deprecated: set "
            "c.CourseOAuthenticator.auth_state_groups_key to a callable of the auth state."
        )
        self.auth_state_groups_key = lambda auth_state: f(
            self, auth_state.get(self.user_auth_state_key) or {}
        )

    async def _claimed_groups(self, auth_state: dict) -> list[str]:
        """The raw values at ``auth_state_groups_key`` (a list of strings), or a
        :class:`ClaimError`.

        Read as oauthenticator's ``get_user_groups`` reads it (a dotted key, or a callable,
        maybe async), but a value of the wrong type is an error: oauthenticator's would make
        a string claim a set of single characters, and an int no groups at all, which at a
        refresh would take everyone's courses away.
        """
        key = self.auth_state_groups_key
        if callable(key):
            values = key(auth_state)
            name = "auth_state_groups_key"
        else:
            try:
                values = reduce(dict.get, key.split("."), auth_state)
            except TypeError:
                values = None
            name = key.split(".", 1)[-1] if key.startswith(f"{self.user_auth_state_key}.") else key
        if isawaitable(values):
            values = await values
        if values is None:
            return []
        if isinstance(values, str | bytes | dict) or not isinstance(values, Iterable):
            raise ClaimError(
                f"The login service sent the {name!r} claim as a {type(values).__name__}, "
                "not a list of groups. Your hub administrators must fix the provider's "
                "claim mapping; your courses were not changed."
            )
        values = list(values)
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise ClaimError(
                f"The login service sent a {type(bad[0]).__name__} in the {name!r} claim, "
                "where group names are expected; your courses were not changed."
            )
        return values

    def _course_group_name(self, value: str) -> str | None:
        if parse_group(value):
            return value
        for prefix in self.entitlement_prefixes:
            if value.startswith(prefix) and parse_group(value[len(prefix) :]):
                return value[len(prefix) :]
        return None

    async def get_user_groups(self, auth_state: dict):
        """Course groups (claims + rosters + catalog), plus claimed groups named in
        ``admin_groups`` or ``allowed_groups`` (for oauthenticator's admin and allow rules);
        every other claimed group is ignored."""
        values = await self._claimed_groups(auth_state)
        user_info = auth_state.get(self.user_auth_state_key) or {}
        username = self.normalize_username(self.user_info_to_username(user_info))
        claimed = [g for g in map(self._course_group_name, values) if g]
        groups = self.course_groups(username, claimed, emails=self._verified_emails(user_info))
        groups |= set(values) & (set(self.admin_groups) | set(self.allowed_groups))
        return groups


def configure_oidc(
    c,
    issuer_url: str,
    client_id: str,
    client_secret: str,
    *,
    callback_url: str | None = None,
    login_service: str | None = None,
    admin_groups: Iterable[str] = (),
    auth_refresh_age: int | None = None,
    timeout: float | None = None,
) -> None:
    """Switch a hub (``c``, its config) to :class:`CourseOAuthenticator` on an OIDC provider.

    Sets the traits: ``authenticator_class``, :attr:`~CourseOAuthenticator.oidc_issuer`
    (the endpoints come from the provider's discovery document, read when the hub starts),
    the client, ``enable_auth_state`` (refresh tokens and claims are kept encrypted: the
    hub needs ``JUPYTERHUB_CRYPT_KEY`` or ``c.CryptKeeper.keys``) and ``manage_groups``;
    ``admin_groups`` are the provider's groups whose members are hub admins. ``timeout``
    (seconds) bounds each request to the provider (``http_request_kwargs``). The client
    must be registered at the provider as confidential, with ``client_secret_post``, the
    ``authorization_code`` and ``refresh_token`` grants, and ``callback_url``
    (``https://<hub>/hub/oauth_callback``) as a redirect URI.

    Example (``jupyterhub_config.py``)::

        configure_oidc(c, "https://login.example.edu/realms/uni", "course-hub",
                       os.environ["OIDC_CLIENT_SECRET"], admin_groups=["hub-admins"])
    """
    c.JupyterHub.authenticator_class = "course-oauth"
    a = c.CourseOAuthenticator
    a.oidc_issuer = issuer_url
    a.client_id = client_id
    a.client_secret = client_secret
    a.enable_auth_state = True
    a.manage_groups = True
    if callback_url:
        a.oauth_callback_url = callback_url
    if login_service:
        a.login_service = login_service
    if admin_groups:
        a.admin_groups = set(admin_groups)
    if auth_refresh_age is not None:
        a.auth_refresh_age = auth_refresh_age
    if timeout is not None:
        kwargs = dict(a.get("http_request_kwargs", {}))
        kwargs.update(connect_timeout=timeout, request_timeout=timeout)
        a.http_request_kwargs = kwargs
