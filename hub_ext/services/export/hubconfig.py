"""The workspace-export service's entry in ``c.JupyterHub.services`` and its role."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from ..base import PORTS, service_entry

__all__ = [
    "SERVICE_NAME",
    "configure_export",
    "export_service",
    "export_service_role",
    "export_users_role",
]

SERVICE_NAME = "workspace-export"


def export_service(
    *,
    catalog_path: str | Path,
    port: int = PORTS["workspace-export"],
    options: Mapping[str, object] | None = None,
    service_name: str = SERVICE_NAME,
    python: str = sys.executable,
) -> dict:
    """The hub-managed service entry. ``options`` are more traitlets settings, e.g.
    ``{"WorkspaceExportService.max_concurrent": 2}``."""
    return service_entry(
        service_name,
        "hub_ext.services.export",
        port=port,
        catalog_path=catalog_path,
        options=options,
        python=python,
    )


def export_service_role(service_name: str = SERVICE_NAME) -> dict:
    """Least privilege: the service reads users' group membership (their courses), nothing else."""
    return {
        "name": service_name,
        "description": "Reads users' course groups to decide whose workspace they may download",
        "scopes": ["read:users:groups"],
        "services": [service_name],
    }


def export_users_role(catalog, service_name: str = SERVICE_NAME) -> dict:
    """Every course's learners and teachers may use the service (for their own workspace)."""
    groups = sorted(catalog.groups)
    return {
        "name": f"{service_name}-users",
        "description": "Download one's own course workspaces",
        "scopes": [f"access:services!service={service_name}"],
        "groups": groups,
    }


#: the spawner's settings that name a workspace volume, given to the service as they are
VOLUME_SETTINGS = ("workspace_volume_template", "escape")


def configure_export(c, catalog, *, catalog_path: str | Path, **service_options) -> dict:
    """Add the service, its role and its users' role to a JupyterHub config object ``c``.

    The service names workspace volumes as the spawner does: the spawner's
    :data:`VOLUME_SETTINGS` set in ``c`` so far are passed on (set them before this call;
    a callable ``escape`` cannot be passed and is refused).
    """
    options = dict(service_options.pop("options", None) or {})
    spawner = c.CourseDockerSpawner
    for name in VOLUME_SETTINGS:
        if name in spawner:
            value = spawner[name]
            if not isinstance(value, str):
                raise ValueError(
                    f"c.CourseDockerSpawner.{name} is {value!r}: the workspace-export service "
                    "needs it by name ('legacy' or a template string) to find the volumes"
                )
            options.setdefault(f"CourseDockerSpawner.{name}", value)
    service = export_service(catalog_path=catalog_path, options=options, **service_options)
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        export_service_role(service["name"]),
        export_users_role(catalog, service["name"]),
    ]
    return service
