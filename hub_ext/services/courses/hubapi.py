"""The hub's state the course pages show, read through its REST API with the service's token.

One :class:`HubState` per service process keeps a :class:`Snapshot`: every user the
service's token may list (the members of the courses' learner groups: its role is filtered
``!group=course:<id>:learner``) with their last activity and course servers, and the members
of each learner group. It is refreshed by paging through ``GET /hub/api/users`` (the hub's
own page size, ``api_page_max_limit``), one refresh at a time however many pages ask:

- younger than ``fresh_seconds``: used as it is;
- older, but younger than ``stale_seconds``: used as it is, and a refresh starts in the
  background (the next page sees it);
- older still, or none yet: the page waits for the refresh.

So a course of 5,000 learners costs the hub one listing every ``fresh_seconds`` at most,
not one per page view, and a page never waits for it once the first one is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

__all__ = ["HubState", "HubUnavailable", "Snapshot"]

PAGINATION = "application/jupyterhub-pagination+json"


class HubUnavailable(RuntimeError):
    """The hub's API did not answer as expected (the message says what and where)."""


@dataclass(frozen=True)
class Snapshot:
    """The hub's users and learner groups at ``taken_at`` (``time.time()``)."""

    users: dict[str, dict]
    groups: dict[str, frozenset[str]]
    taken_at: float
    #: seconds the refresh took, and how many API requests it made
    took: float = 0.0
    requests: int = 0


@dataclass
class HubState:
    """Reads and caches the hub's users and the learner groups of ``groups``."""

    api_url: str
    token: str
    groups: Iterable[str]
    fresh_seconds: float = 10.0
    stale_seconds: float = 120.0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))
    clock: Callable[[], float] = time.time
    client: AsyncHTTPClient = field(default_factory=AsyncHTTPClient)
    request_timeout: float = 30.0
    #: users per request (the hub answers at most its ``api_page_max_limit``, 200 by default)
    page_size: int = 200

    def __post_init__(self):
        self.groups = tuple(self.groups)
        self._snapshot: Snapshot | None = None
        self._refreshing: asyncio.Task | None = None

    async def _get(self, path: str, **params) -> tuple[object, int]:
        url = f"{self.api_url.rstrip('/')}{path}"
        if params:
            url += "?" + urlencode(params)
        request = HTTPRequest(
            url,
            headers={"Authorization": f"token {self.token}", "Accept": PAGINATION},
            request_timeout=self.request_timeout,
        )
        try:
            response = await self.client.fetch(request)
        except HTTPClientError as e:
            if e.code == 404:
                return None, 1
            # the path only: the URL's query holds nothing secret, but keep log lines short
            raise HubUnavailable(f"the hub's API answered {e.code} to GET {path}") from None
        except OSError as e:
            raise HubUnavailable(f"the hub's API is not reachable ({e})") from None
        return json.loads(response.body), 1

    async def _users(self) -> tuple[dict[str, dict], int]:
        users: dict[str, dict] = {}
        offset, requests = 0, 0
        while True:
            body, n = await self._get(
                "/users", include_stopped_servers="1", offset=offset, limit=self.page_size
            )
            requests += n
            if not isinstance(body, dict) or "items" not in body:
                raise HubUnavailable("the hub's API did not page GET /users (JupyterHub >= 2)")
            for u in body["items"]:
                users[u["name"]] = {
                    "last_activity": u.get("last_activity"),
                    "servers": u.get("servers") or {},
                }
            following = (body.get("_pagination") or {}).get("next")
            if not following or not body["items"]:
                return users, requests
            offset = following["offset"]

    async def _group(self, name: str) -> tuple[frozenset[str], int]:
        body, n = await self._get(f"/groups/{quote(name, safe='')}")
        # a course whose group does not exist yet (nobody logged in): no members
        return frozenset((body or {}).get("users", ())), n

    async def _refresh(self) -> Snapshot:
        started = time.monotonic()
        users, requests = await self._users()
        groups = {}
        for name in self.groups:
            groups[name], n = await self._group(name)
            requests += n
        took = time.monotonic() - started
        snapshot = Snapshot(users, groups, self.clock(), took, requests)
        self._snapshot = snapshot
        self.log.debug("Hub state: %d users in %.2fs (%d requests)", len(users), took, requests)
        return snapshot

    def _start_refresh(self) -> asyncio.Task:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        return self._refreshing

    def _refreshed(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("Reading the hub's users failed: %s", task.exception())

    async def snapshot(self) -> Snapshot:
        """The hub's state, as fresh as the rules above say. Raises HubUnavailable when
        there is none recent enough and the hub does not answer."""
        current = self._snapshot
        age = None if current is None else self.clock() - current.taken_at
        if current is not None and age < self.fresh_seconds:
            return current
        task = self._start_refresh()
        if current is not None and age < self.stale_seconds:
            return current
        return await asyncio.shield(task)

    def invalidate(self) -> None:
        """The next :meth:`snapshot` waits for a new reading."""
        self._snapshot = None
