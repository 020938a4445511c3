"""The workspace-export service's entry in ``c.JupyterHub.services`` and its role."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SERVICE_NAME", "configure_export", "export_service", "export_service_role"]

SERVICE_NAME = "workspace-export"


def export_service(
    *,
    catalog_path: str | Path,
    port: int = 10102,
    options: Mapping[str, object] | None = None,
    service_name: str = SERVICE_NAME,
    python: str = sys.executable,
) -> dict:
    """The hub-managed service entry. ``options`` are more traitlets settings, e.g.
    ``{"WorkspaceExportService.volume_template": "ws_{course}_{username}"}`` (it must match
    ``c.CourseDockerSpawner.workspace_volume_template``)."""
    command = [
        python,
        "-m",
        "hub_ext.services.export",
        f"--CourseCatalog.path={Path(catalog_path).resolve()}",
    ]
    for key, value in (options or {}).items():
        command.append(f"--{key}={value}")
    return {
        "name": service_name,
        "url": f"http://127.0.0.1:{port}",
        "command": command,
        "display": False,
        "oauth_no_confirm": True,
    }


def export_service_role(service_name: str = SERVICE_NAME) -> dict:
    """Least privilege: the service reads users' group membership (their courses), nothing else."""
    return {
        "name": service_name,
        "description": "Reads users' course groups to decide whose workspace they may download",
        "scopes": ["read:users:groups"],
        "services": [service_name],
    }


def configure_export(c, *, catalog_path: str | Path, **service_options) -> dict:
    """Add the service and its role to a JupyterHub config object ``c``."""
    service = export_service(catalog_path=catalog_path, **service_options)
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        export_service_role(service["name"]),
    ]
    return service
