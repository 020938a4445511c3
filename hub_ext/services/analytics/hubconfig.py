"""What the hub's configuration must say about the analytics service.

In ``jupyterhub_config.py``, after the catalog is loaded::

    from hub_ext.services.analytics.hubconfig import configure_analytics
    configure_analytics(c, catalog, catalog_path="courses.yaml",
                        events_url=readonly_url_of_the_event_store,
                        admin_users=c.Authenticator.admin_users)

or wire the pieces yourself: :func:`analytics_service` into ``c.JupyterHub.services``,
:func:`analytics_scopes` into ``c.JupyterHub.custom_scopes``, :func:`analytics_roles`
into ``c.JupyterHub.load_roles``.

Least privilege:

- the service's own hub token needs **no scopes** (:data:`SERVICE_SCOPES` is empty): it
  identifies callers by asking the hub about *their* token (``GET /hub/api/user`` with
  the caller's token) and completes OAuth with its client secret;
- a caller needs ``access:services!service=analytics`` (to log in to the service with
  OAuth, and to be let in at all) and ``custom:analytics:course:<id>`` for each course
  whose APIs they call or publish. The course's teacher role (``teacher-<id>``,
  :mod:`hub_ext.rbac`) carries the course scope; :func:`analytics_roles` adds the access
  scope for every teacher group and both to the admins;
- OAuth tokens the service receives carry at most the course scopes
  (``oauth_client_allowed_scopes``), intersected by the hub with the user's own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...courses import Catalog, analytics_scope
from ...rbac import course_scopes
from ..base import PORTS, service_entry

__all__ = [
    "SERVICE_NAME",
    "SERVICE_SCOPES",
    "analytics_roles",
    "analytics_scopes",
    "analytics_service",
    "configure_analytics",
]

SERVICE_NAME = "analytics"
#: scopes the service's own token needs: none (see the module docstring)
SERVICE_SCOPES: list[str] = []


def access_scope(service_name: str = SERVICE_NAME) -> str:
    return f"access:services!service={service_name}"


def analytics_scopes(catalog: Catalog) -> dict[str, dict]:
    """``c.JupyterHub.custom_scopes`` entries: one scope per course (defined by hub_ext.rbac)."""
    ours = {analytics_scope(c) for c in catalog}
    return {name: scope for name, scope in course_scopes(catalog).items() if name in ours}


def analytics_roles(
    catalog: Catalog,
    *,
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    service_name: str = SERVICE_NAME,
) -> list[dict]:
    """Roles that let teachers in through the service's door, and admins into every course."""
    roles = [
        {
            "name": f"{service_name}-callers",
            "description": "Teachers may log in to the analytics service (their course scope decides which APIs)",
            "scopes": [access_scope(service_name)],
            "groups": [c.teacher_group for c in catalog.values()],
        }
    ]
    admins, groups = sorted(admin_users), sorted(admin_groups)
    if admins or groups:
        role = {
            "name": f"{service_name}-admins",
            "description": "Admins may call and publish the analytics APIs of every course",
            "scopes": [access_scope(service_name), *(analytics_scope(c) for c in catalog)],
        }
        if admins:
            role["users"] = admins
        if groups:  # the provider's admin groups (oauthenticator's admin_groups)
            role["groups"] = groups
        roles.append(role)
    return roles


def analytics_service(
    catalog: Catalog,
    *,
    catalog_path: str | Path,
    port: int = PORTS["analytics"],
    runtime_dir: str | Path | None = None,
    events_url: str = "",
    options: Mapping[str, object] | None = None,
    service_name: str = SERVICE_NAME,
    python: str = sys.executable,
) -> dict:
    """The ``c.JupyterHub.services`` entry of the hub-managed analytics service.

    ``options`` are more traitlets settings for the service, e.g.
    ``{"GatewaySupervisor.pool_size": 4, "GatewaySupervisor.execution_timeout": 20}``.
    """
    settings = {}
    if runtime_dir:
        settings["GatewaySupervisor.runtime_dir"] = Path(runtime_dir).resolve()
    if events_url:
        settings["AnalyticsService.events_url"] = events_url
    return service_entry(
        service_name,
        "hub_ext.services.analytics",
        port=port,
        catalog_path=catalog_path,
        settings=settings,
        options=options,
        python=python,
        oauth_client_allowed_scopes=[analytics_scope(c) for c in catalog],
    )


def configure_analytics(
    c,
    catalog: Catalog,
    *,
    catalog_path: str | Path,
    admin_users: Iterable[str] = (),
    **service_options,
) -> dict:
    """Add the service, its scopes and roles to a JupyterHub config object ``c``."""
    service = analytics_service(catalog, catalog_path=catalog_path, **service_options)
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    c.JupyterHub.custom_scopes = {
        **c.JupyterHub.get("custom_scopes", {}),
        **analytics_scopes(catalog),
    }
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        *analytics_roles(catalog, admin_users=admin_users, service_name=service["name"]),
    ]
    return service
