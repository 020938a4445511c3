"""A real OpenID provider (dev_idp: panva's oidc-provider) and a real hub logging in through it.

- :func:`start_oidc_hub`: a hub (tests/hubtest.py) switched to ``CourseOAuthenticator`` with
  :func:`hub_ext.authenticator.configure_oidc`, and a development provider on a free
  loopback port whose only client is that hub; :class:`OIDCHub` stops both (by PID).
- :func:`oidc_login`: a browser without a browser: httpx follows the hub's
  ``/hub/oauth_login`` to the provider, fills in the provider's login form, and follows the
  redirect back to the hub's ``/hub/oauth_callback``.

Nothing is faked: PKCE, ``client_secret_post``, the userinfo endpoint, refresh tokens and
the hub's encrypted auth state are the real ones.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

from dev_idp.launch import DevIdP, start_idp, stop_idp
from tests.hubtest import HubProcess

__all__ = ["OIDCHub", "oidc_authorize", "oidc_login", "start_oidc_hub", "write_accounts"]


def write_accounts(path: Path, accounts: list[dict]) -> Path:
    """Write (or rewrite, e.g. to change someone's groups) the provider's accounts file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"accounts": accounts}, indent=1))
    tmp.replace(path)  # the provider re-reads it at every request: never a half-written file
    return path


@dataclass
class OIDCHub:
    hub: HubProcess
    idp: DevIdP
    accounts_path: Path
    accounts: list[dict]
    crypt_key: str
    #: every token the hub received in this session (see record_tokens), for the log check
    seen_tokens: set[str] = field(default_factory=set)

    def password(self, username: str) -> str:
        return next(a["password"] for a in self.accounts if a["username"] == username)

    def set_groups(self, username: str, groups) -> None:
        for a in self.accounts:
            if a["username"] == username:
                a["groups"] = groups
        write_accounts(self.accounts_path, self.accounts)

    async def auth_state(self, username: str) -> dict:
        r = await self.hub.api("GET", f"/users/{username}", token=self.auth_state_token)
        r.raise_for_status()
        return r.json()["auth_state"] or {}

    async def record_tokens(self, username: str) -> dict:
        state = await self.auth_state(username)
        for key in ("access_token", "refresh_token", "id_token"):
            if state.get(key):
                self.seen_tokens.add(state[key])
        return state

    async def login(self, username: str, **kwargs) -> httpx.AsyncClient:
        client = await oidc_login(self.hub.url, username, self.password(username), **kwargs)
        await self.record_tokens(username)
        return client

    async def stop(self) -> None:
        try:
            await self.hub.shutdown()
        finally:
            stop_idp(self.idp.pid)

    auth_state_token: str = ""


OIDC_CONFIG = """
import json as _json
from hub_ext.authenticator import configure_oidc
_idp = _json.load(open({state!r}))
configure_oidc(c, _idp["issuer"], _idp["client_id"], _idp["client_secret"],
               admin_groups=["hub-admins"], auth_refresh_age={refresh_age})
c.CryptKeeper.keys = [bytes.fromhex({key!r})]
c.CourseOAuthenticator.entitlement_prefixes = ["urn:mace:example.edu:"]
c.CourseOAuthenticator.roster_dir = {roster_dir!r}
c.JupyterHub.services = c.JupyterHub.services + [{{"name": "auth-state-reader", "api_token": {reader!r}}}]
c.JupyterHub.load_roles = c.JupyterHub.load_roles + [
    {{"name": "auth-state-reader", "scopes": ["admin:auth_state", "read:users"],
      "services": ["auth-state-reader"]}},
]
"""


async def start_oidc_hub(
    workdir: Path,
    catalog: Path,
    accounts: list[dict],
    *,
    refresh_age: int = 300,
    access_token_ttl: int = 3600,
    extra_config: str = "",
    db_url: str | None = None,
) -> OIDCHub:
    """Start a development provider with ``accounts`` and a hub that logs in through it."""
    workdir.mkdir(parents=True, exist_ok=True)
    accounts_path = write_accounts(workdir / "accounts.json", accounts)
    crypt_key = secrets.token_hex(32)
    reader = secrets.token_hex(32)
    state_dir = workdir / "idp"
    config = OIDC_CONFIG.format(
        state=str(state_dir / "idp.json"),
        refresh_age=refresh_age,
        key=crypt_key,
        roster_dir=str(workdir / "rosters"),
        reader=reader,
    )
    hub = HubProcess(
        workdir / "hub", catalog, extra_config=config + textwrap.dedent(extra_config), db_url=db_url
    )
    idp = start_idp(
        state_dir,
        [f"{hub.url}/hub/oauth_callback"],
        accounts=accounts_path,
        access_token_ttl=access_token_ttl,
    )
    oidc = OIDCHub(hub, idp, accounts_path, accounts, crypt_key, auth_state_token=reader)
    try:
        await hub.start()
    except BaseException:
        stop_idp(idp.pid)
        raise
    return oidc


_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+/login)"')


async def oidc_authorize(
    client: httpx.AsyncClient, hub_url: str, username: str, password: str
) -> httpx.Response:
    """Start a login at the hub and sign in at the provider's form, stopping at the hub:
    returns the provider's redirect to ``/hub/oauth_callback`` (not yet followed), or the
    provider's answer if it did not redirect there (e.g. the form again, for a bad password).
    """
    r = await client.get(f"{hub_url}/hub/oauth_login", follow_redirects=True)
    r.raise_for_status()
    m = _FORM_ACTION.search(r.text)
    if not m:
        raise AssertionError(f"no login form at {r.url}:\n{r.text[:500]}")
    r = await client.post(
        urljoin(str(r.url), m[1]), data={"username": username, "password": password}
    )
    while r.is_redirect:
        location = urljoin(str(r.url), r.headers["location"])
        if location.startswith(f"{hub_url}/hub/oauth_callback"):
            return r
        r = await client.get(location)
    return r


async def oidc_login(
    hub_url: str, username: str, password: str, *, expect_ok: bool = True
) -> httpx.AsyncClient:
    """A browser-like client that has logged in to the hub through the provider.

    With ``expect_ok`` (default), raises unless the login ended on a hub page; otherwise the
    client's ``last_response`` attribute is the final response, for error-page tests.
    """
    client = httpx.AsyncClient(timeout=30)
    try:
        r = await oidc_authorize(client, hub_url, username, password)
        if r.is_redirect:
            r = await client.get(urljoin(str(r.url), r.headers["location"]), follow_redirects=True)
    except BaseException:
        await client.aclose()
        raise
    client.last_response = r
    if expect_ok and (r.status_code != 200 or not str(r.url).startswith(f"{hub_url}/hub/")):
        await client.aclose()
        raise AssertionError(f"login of {username} failed: {r.status_code} {r.url}\n{r.text[:800]}")
    return client
