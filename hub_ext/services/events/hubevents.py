"""The hub's own activity as statements in the event store.

Two sources, because JupyterHub reports them in two ways:

- **Server started / stopped**: JupyterHub emits a ``server-action`` event (schema
  ``https://schema.jupyter.org/jupyterhub/events/server-action``) through its
  jupyter_events ``EventLogger`` whenever it starts or stops a server. Add
  :class:`ServerActionHandler` to the hub's event logger::

      from hub_ext.services.events.hubevents import ServerActionHandler
      c.EventLogger.handlers = [ServerActionHandler(db_url="sqlite:////srv/events.sqlite")]

  It turns each event into a *launched* / *exited* statement about the course server and
  writes it from a background thread (never on the hub's event loop).
- **Last activity**: the hub keeps each server's ``last_activity`` but emits no event.
  :class:`HubActivityPoller` (run by the events service) reads it from the hub API every
  ``interval`` seconds and records an *interacted* statement for each new value.

A named server is a course (``/user/alice/ds101/``): its name is the statement's course.
Statements are identified by UUIDv5s of what they say, so recording one twice stores it once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import threading
import uuid
from datetime import UTC, datetime

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Any, Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ...courses import COURSE_ID_PATTERN
from .store import EventStore
from .xapi import course_iri, parse_timestamp, to_row

__all__ = [
    "HubActivityPoller",
    "SERVER_ACTION_SCHEMA",
    "ServerActionHandler",
    "server_statement",
]

SERVER_ACTION_SCHEMA = "https://schema.jupyter.org/jupyterhub/events/server-action"
NAMESPACE = uuid.UUID("0b8e3b7e-6f55-4f2e-9a3c-5d0c3c1f8a11")
VERBS = {
    "start": ("http://adlnet.gov/expapi/verbs/launched", "launched"),
    "stop": ("http://adlnet.gov/expapi/verbs/exited", "exited"),
    "activity": ("http://adlnet.gov/expapi/verbs/interacted", "interacted"),
}
#: the activity type of a course server
COURSE_SERVER_TYPE = "urn:hub-ext:activity-type:course-server"
_COURSE_RE = re.compile(COURSE_ID_PATTERN)


def server_object(course: str | None) -> dict:
    return {
        "objectType": "Activity",
        "id": f"urn:hub-ext:course-server:{course or 'default'}",
        "definition": {
            "type": COURSE_SERVER_TYPE,
            "name": {"en": f"course server {course or '(default)'}"},
        },
    }


def server_statement(
    action: str, username: str, servername: str, moment: datetime, home: str
) -> dict:
    """The ``statements`` row for a server action (start, stop) or activity at ``moment``."""
    verb, display = VERBS[action]
    course = servername if _COURSE_RE.match(servername or "") else None
    statement = {
        "id": str(uuid.uuid5(NAMESPACE, f"{action}|{username}|{servername}|{moment.isoformat()}")),
        "actor": {"objectType": "Agent", "account": {"homePage": home, "name": username}},
        "verb": {"id": verb, "display": {"en-US": display}},
        "object": server_object(course),
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
    }
    if course:
        statement["context"] = {"contextActivities": {"grouping": [{"id": course_iri(course)}]}}
    return to_row(
        statement,
        stored=datetime.now(UTC),
        source="hub",
        course_id=course,
        learner=username,
        timestamp=moment,
    )


def _event_time(capsule: dict, record: logging.LogRecord) -> datetime:
    # jupyter_events writes isoformat() + "Z" (``...+00:00Z``); take what parses
    raw = str(capsule.get("__timestamp__", ""))
    if raw.endswith("Z") and "+" in raw:
        raw = raw[:-1]
    try:
        return parse_timestamp(raw)
    except ValueError:
        return datetime.fromtimestamp(record.created, UTC)


class ServerActionHandler(logging.Handler):
    """A logging handler for JupyterHub's ``EventLogger`` that records server actions.

    ``db_url``: the event store. ``home``: the hub's public URL (the accounts' homePage).
    Writes happen on a daemon thread, in batches; :meth:`flush` waits for them.
    """

    def __init__(self, db_url: str, home: str = "http://localhost:8000", level=logging.INFO):
        super().__init__(level)
        self.db_url, self.home = db_url, home.rstrip("/")
        self._queue: queue.Queue = queue.Queue()
        self._store: EventStore | None = None
        self._thread: threading.Thread | None = None
        self._lock_start = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        capsule = record.msg
        if isinstance(capsule, str):
            try:
                capsule = json.loads(capsule)
            except ValueError:
                return
        if not isinstance(capsule, dict) or capsule.get("__schema__") != SERVER_ACTION_SCHEMA:
            return
        action = capsule.get("action")
        if action not in ("start", "stop"):
            return
        try:
            row = server_statement(
                action,
                capsule["username"],
                capsule.get("servername", ""),
                _event_time(capsule, record),
                self.home,
            )
        except Exception:  # a bad event must never break the hub
            self.handleError(record)
            return
        self._ensure_thread()
        self._queue.put(row)

    def _ensure_thread(self) -> None:
        with self._lock_start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="hub-ext-server-actions", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            row = self._queue.get()
            if row is None:
                self._queue.task_done()
                return
            rows = [row]
            while True:  # take what else is waiting: one transaction for a burst
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    self._queue.task_done()
                    break
                rows.append(more)
            try:
                if self._store is None:
                    self._store = EventStore(self.db_url)
                    self._store.create()
                self._store.add_statements(rows)
            except Exception:
                logging.getLogger("hub_ext.events").exception(
                    "could not record %d server action(s)", len(rows)
                )
            finally:
                for _ in rows:
                    self._queue.task_done()

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(10)
        if self._store is not None:
            self._store.dispose()
        super().close()


class HubActivityPoller(LoggingConfigurable):
    """Reads the course servers' ``last_activity`` from the hub API and records it.

    Needs a token with ``list:users``, ``read:users:activity`` and ``read:servers``.
    """

    store = Any()
    interval = Float(60, help="Seconds between polls. Default 60.").tag(config=True)
    home = Unicode(
        "http://localhost:8000", help="The hub's public URL (the accounts' homePage)."
    ).tag(config=True)
    api_url = Unicode(help="The hub API URL. Default: $JUPYTERHUB_API_URL.").tag(config=True)
    api_token = Unicode(help="The token. Default: $JUPYTERHUB_API_TOKEN.").tag(config=True)

    @default("api_url")
    def _default_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._seen: dict[tuple[str, str], str] = {}

    async def fetch_users(self) -> list[dict]:
        client = AsyncHTTPClient()
        users, offset = [], 0
        while True:
            req = HTTPRequest(
                f"{self.api_url.rstrip('/')}/users?state=active&offset={offset}&limit=200",
                headers={
                    "Authorization": f"token {self.api_token}",
                    "Accept": "application/jupyterhub-pagination+json",
                },
                request_timeout=30,
            )
            resp = await client.fetch(req)
            body = json.loads(resp.body)
            items = body["items"] if isinstance(body, dict) else body
            users.extend(items)
            nxt = (body.get("_pagination") or {}).get("next") if isinstance(body, dict) else None
            if not nxt:
                return users
            offset = nxt["offset"]

    def rows(self, users: list[dict]) -> list[dict]:
        """Statements for the server activity not recorded yet."""
        rows = []
        for user in users:
            for name, server in (user.get("servers") or {}).items():
                last = server.get("last_activity")
                if not last or self._seen.get((user["name"], name)) == last:
                    continue
                self._seen[(user["name"], name)] = last
                rows.append(
                    server_statement(
                        "activity", user["name"], name, parse_timestamp(last), self.home
                    )
                )
        return rows

    async def poll_once(self) -> int:
        rows = self.rows(await self.fetch_users())
        if rows:
            await asyncio.to_thread(self.store.add_statements, rows)
        return len(rows)

    async def run(self) -> None:
        while True:
            try:
                n = await self.poll_once()
                if n:
                    self.log.debug("recorded %d server activity statement(s)", n)
            except Exception as e:  # keep polling: the hub may be restarting
                self.log.warning("could not read hub activity: %s", e)
            await asyncio.sleep(self.interval)
