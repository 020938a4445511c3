"""Wiring the events service into a hub: the ``c.JupyterHub.services`` entry and its role.

::

    from hub_ext.services.events.hubconfig import events_role, events_service, server_action_handler
    c.JupyterHub.services.append(events_service(db_url="sqlite:////srv/hub/events.sqlite"))
    c.JupyterHub.load_roles.append(events_role())
    c.EventLogger.handlers = [server_action_handler(db_url="sqlite:////srv/hub/events.sqlite")]

The service's least-privilege role (``events_role``) has exactly what the activity poller
needs and nothing else:

- ``list:users``: to list the users with running servers;
- ``read:users:activity``: their last activity;
- ``read:servers``: their servers' names and ``last_activity``.

It needs no ``access:services`` (LMSs authenticate with the service's own per-source HTTP
Basic credentials, not hub tokens) and no write scope on the hub. Without the role (or with
``record_hub_activity=False``) the service still serves xAPI. The analytics notebooks get
:func:`readonly_url` of the same store in ``HUB_EXT_EVENTS_URL``.
"""

from __future__ import annotations

from ..base import PORTS, service_entry
from .hubevents import ServerActionHandler
from .store import readonly_url

__all__ = [
    "EVENTS_SCOPES",
    "events_role",
    "events_service",
    "readonly_url",
    "server_action_handler",
]

SERVICE_NAME = "events"
#: the least the service needs (see the module docstring)
EVENTS_SCOPES = ("list:users", "read:users:activity", "read:servers")


def events_service(
    db_url: str,
    *,
    name: str = SERVICE_NAME,
    port: int = PORTS["events"],
    public_url: str | None = None,
    settings: dict | None = None,
) -> dict:
    """The ``c.JupyterHub.services`` entry of a hub-managed events service.

    ``db_url``: the store (the service's working directory is the hub's). ``port``: the
    loopback port it listens on. ``public_url``: the hub's public URL, used as the homePage
    of hub accounts in statements.
    """
    env = {"HUB_EXT_EVENTS_DB": db_url}
    if public_url:
        env["HUB_EXT_PUBLIC_URL"] = public_url
    entry = service_entry(
        name, "hub_ext.services.events.service", port=port, settings=settings or {}, environment=env
    )
    entry.pop("oauth_no_confirm")  # no browser logs in to it: LMSs use Basic credentials
    return entry


def events_role(name: str = SERVICE_NAME) -> dict:
    """The role granting the service :data:`EVENTS_SCOPES` (and nothing more)."""
    return {
        "name": f"{name}-service",
        "description": "Record course servers' activity in the event store",
        "scopes": list(EVENTS_SCOPES),
        "services": [name],
    }


def server_action_handler(
    db_url: str, public_url: str = "http://localhost:8000"
) -> ServerActionHandler:
    """The handler for ``c.EventLogger.handlers`` that records server starts and stops."""
    return ServerActionHandler(db_url=db_url, home=public_url)
