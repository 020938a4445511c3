"""Course authenticators: who may log in, and which course groups they belong to.

Course membership is expressed as JupyterHub groups (``course:<id>:learner`` and
``course:<id>:teacher``), kept in sync at every login (and refresh) by JupyterHub's
``manage_groups``. :class:`CourseGroupsMixin` holds the enrollment-to-groups logic that
every course authenticator shares: the catalog's static lists, LMS rosters (the catalog's
``rosters:`` files and those imported with ``hub-ext import-roster``) and whatever the
identity provider claims. The authenticators differ only in where identities come from.

- :class:`CourseOAuthenticator`: the institution's OpenID Connect / OAuth2 provider
  (oauthenticator's ``GenericOAuthenticator``); configure it with :func:`configure_oidc`.
- :class:`CourseDevAuthenticator`: a development login (username + shared password) for
  the demo and tests; groups come from the catalog's static rosters.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterable
from functools import reduce
from inspect import isawaitable
from pathlib import Path

from jupyterhub.auth import Authenticator
from jupyterhub.utils import maybe_future
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Callable, CaselessStrEnum, List, Unicode, default
from traitlets.config import LoggingConfigurable

from .courses import USERNAME_PATTERN, CourseCatalog, parse_group
from .roster import RosterError, RosterIndex, RosterStore, load_catalog_rosters

__all__ = [
    "ClaimError",
    "CourseDevAuthenticator",
    "CourseGroupsMixin",
    "CourseOAuthenticator",
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
    ).tag(config=True)

    roster_dir = Unicode(
        help="""Directory of the rosters imported with ``hub-ext import-roster``
        (its ``rosters.json``). Read at each login and refresh (re-read when it changes).

        Default: the ``HUB_EXT_ROSTER_DIR`` environment variable, else none (only the
        catalog's own lists and ``rosters:`` files).
        Example: ``c.CourseOAuthenticator.roster_dir = "/srv/jupyterhub/rosters"``
        """,
    ).tag(config=True)

    @default("roster_dir")
    def _default_roster_dir(self):
        return os.environ.get("HUB_EXT_ROSTER_DIR", "")

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


def _url_without_query(url: str) -> str:
    return url.split("?", 1)[0]


class CourseOAuthenticator(CourseGroupsMixin, GenericOAuthenticator):
    """Log in through the institution's OpenID Connect / OAuth2 provider.

    A ``GenericOAuthenticator`` (authorization code + PKCE, ``client_secret_post``) whose
    documented hooks turn the provider's claims into course groups:

    - :meth:`user_info_to_username`: the username, by :attr:`username_policy`;
    - :meth:`get_user_groups`: ``course:<id>:<role>`` groups from the claim at
      :attr:`auth_state_groups_key` (a list of group names, or of eduPerson entitlement
      URNs under one of :attr:`entitlement_prefixes`, or what :attr:`course_groups_from_claims`
      returns), merged with the rosters and the catalog's lists;
    - :meth:`check_allowed`: enrolled in at least one course, or admin (``admin_users``,
      or a group in ``admin_groups``);
    - :meth:`refresh_user`: with ``enable_auth_state``, every ``auth_refresh_age`` seconds
      (and before each spawn) the claims are fetched again, so someone dropped from a
      course at the provider loses it then.

    Use :func:`configure_oidc` to set it up from the provider's issuer URL.
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
          with :attr:`email_domains` set to the institution's own domain(s).
        - ``email``: the whole address: unique while addresses are not re-assigned.
        - ``sub``: the provider's subject identifier: stable and unique, but opaque.
        - ``claim``: oauthenticator's own :attr:`username_claim` (a claim name or callable).

        Email-based policies need ``email_verified`` not to be false. The result is
        lowercased and must be a valid hub username (letters, digits, ``. _ @ + -``).
        Example: ``c.CourseOAuthenticator.username_policy = "email_local_part"``
        """,
    ).tag(config=True)

    email_domains = List(
        Unicode(),
        help="""The email domains accepted for email-based usernames and roster matching.

        Default: ``[]`` (any domain). Example:
        ``c.CourseOAuthenticator.email_domains = ["example.edu", "students.example.edu"]``
        """,
    ).tag(config=True)

    entitlement_prefixes = List(
        Unicode(),
        help="""Prefixes of eduPerson entitlement URNs that carry course groups.

        With ``["urn:mace:example.edu:"]``, the claimed value
        ``urn:mace:example.edu:course:ds101:learner`` means the group
        ``course:ds101:learner``. Plain ``course:<id>:<role>`` values are always understood.
        Point :attr:`auth_state_groups_key` at the claim (e.g.
        ``"oauth_user.eduperson_entitlement"``). Default: ``[]``.
        Example: ``c.CourseOAuthenticator.entitlement_prefixes = ["urn:mace:example.edu:"]``
        """,
    ).tag(config=True)

    course_groups_from_claims = Callable(
        None,
        allow_none=True,
        help="""A callable that returns a user's course groups from the provider's claims.

        Called as ``groups = [await] f(authenticator, user_info)`` (``user_info`` is the
        userinfo response); it must return an iterable of ``course:<id>:<role>`` names.
        Replaces the reading of :attr:`auth_state_groups_key`. Default: None.
        Example: ``c.CourseOAuthenticator.course_groups_from_claims = lambda a, u: [
        f"course:{c}:learner" for c in u.get("courses", [])]``
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ the provider

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

    def _verified_emails(self, user_info: dict) -> list[str]:
        email = user_info.get("email")
        if not isinstance(email, str) or "@" not in email:
            return []
        if user_info.get("email_verified") is False:
            return []
        domain = email.rsplit("@", 1)[1].lower()
        if self.email_domains and domain not in {d.lower() for d in self.email_domains}:
            return []
        return [email.lower()]

    def user_info_to_username(self, user_info):
        policy = self.username_policy
        if policy == "claim":
            return super().user_info_to_username(user_info)
        if policy in ("email", "email_local_part"):
            emails = self._verified_emails(user_info)
            if not emails:
                raise web.HTTPError(
                    403,
                    "Your account has no verified email address %s, which this hub uses as "
                    "your username.",
                    f"in {', '.join(self.email_domains)}" if self.email_domains else "",
                )
            username = emails[0] if policy == "email" else emails[0].split("@", 1)[0]
        else:
            username = user_info.get(policy)
        if not isinstance(username, str) or not username:
            raise ClaimError(
                f"The login service did not send the {policy!r} claim this hub uses as "
                "the username (is the 'profile' scope granted?)."
            )
        username = username.lower()
        if not re.match(USERNAME_PATTERN, username):
            raise web.HTTPError(
                403,
                "Your %s %r cannot be used as a username on this hub "
                "(letters, digits and . _ @ + - only).",
                policy,
                username,
            )
        return username

    # ------------------------------------------------------------------ groups

    async def _claimed_groups(self, auth_state: dict) -> list[str]:
        """The raw values of the groups claim (a list of strings), or a :class:`ClaimError`."""
        user_info = auth_state.get(self.user_auth_state_key) or {}
        key = self.auth_state_groups_key
        if self.course_groups_from_claims is not None:
            values = self.course_groups_from_claims(self, user_info)
            name = "course_groups_from_claims"
        elif callable(key):
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
        ``admin_groups`` or ``allowed_groups``; every other claimed group is ignored."""
        values = await self._claimed_groups(auth_state)
        user_info = auth_state.get(self.user_auth_state_key) or {}
        username = self.normalize_username(self.user_info_to_username(user_info))
        claimed = [g for g in map(self._course_group_name, values) if g]
        groups = self.course_groups(username, claimed, emails=self._verified_emails(user_info))
        groups |= set(values) & (set(self.admin_groups) | set(self.allowed_groups))
        return groups


def discover_provider(issuer_url: str, timeout: float = 10) -> dict:
    """The provider's OpenID Connect discovery document (``/.well-known/openid-configuration``)."""
    url = issuer_url.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


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
    timeout: float = 10,
) -> dict:
    """Switch a hub (``c``, its config) to :class:`CourseOAuthenticator` on an OIDC provider.

    Reads the provider's discovery document once (the hub will not start, with a clear
    message, if the provider cannot be reached), and sets the authorize, token and userinfo
    endpoints, the client, ``enable_auth_state`` (refresh tokens and claims are kept
    encrypted: the hub needs ``JUPYTERHUB_CRYPT_KEY`` or ``c.CryptKeeper.keys``) and
    ``manage_groups``. The client must be registered at the provider as confidential,
    with ``client_secret_post``, the ``authorization_code`` and ``refresh_token`` grants,
    and ``callback_url`` (``https://<hub>/hub/oauth_callback``) as a redirect URI.
    Returns the discovery document.

    Example (``jupyterhub_config.py``)::

        configure_oidc(c, "https://login.example.edu/realms/uni", "course-hub",
                       os.environ["OIDC_CLIENT_SECRET"], admin_groups=["hub-admins"])
    """
    try:
        meta = discover_provider(issuer_url, timeout)
    except (OSError, ValueError) as e:
        sys.exit(
            f"Cannot read the OpenID provider's discovery document at {issuer_url}: {e}. "
            "Check the issuer URL and that the provider is up; the hub will not start."
        )
    missing = [
        k
        for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")
        if k not in meta
    ]
    if missing:
        sys.exit(f"The OpenID provider at {issuer_url} does not announce {', '.join(missing)}")
    methods = meta.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if "client_secret_post" not in methods:
        sys.exit(
            f"The OpenID provider at {issuer_url} does not accept client_secret_post "
            f"(it offers {', '.join(methods)}); set c.CourseOAuthenticator.basic_auth = True "
            "for client_secret_basic."
        )
    c.JupyterHub.authenticator_class = "course-oauth"
    a = c.CourseOAuthenticator
    a.client_id = client_id
    a.client_secret = client_secret
    a.authorize_url = meta["authorization_endpoint"]
    a.token_url = meta["token_endpoint"]
    a.userdata_url = meta["userinfo_endpoint"]
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
    return meta
