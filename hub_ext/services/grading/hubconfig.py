"""What the hub's configuration must say about the grading service.

In ``jupyterhub_config.py``, after the catalog is loaded::

    from hub_ext.services.grading.hubconfig import grading_roles, grading_service
    c.JupyterHub.services.append(grading_service(
        catalog, catalog_path="courses.yaml", data_dir="/srv/hub/grading",
        events_db="sqlite:////srv/hub/events.sqlite", public_url="https://hub.example.edu",
        port=10104))
    c.JupyterHub.load_roles.extend(grading_roles(catalog, admin_users={"admin"}))

The course scopes themselves (``custom:grading:submit:<id>`` for the course's learner
group, ``custom:grading:grade:<id>`` in its teacher role) are declared and granted by
:mod:`hub_ext.rbac`.

Least privilege:

- the service's own hub token needs **no scopes**: it asks the hub about each caller's
  token and completes OAuth with its client secret;
- a caller needs ``access:services!service=grading`` (to log in with OAuth; given to every
  course group by :func:`grading_roles`) and, per request, the course's grading scope;
- OAuth tokens the service receives carry at most the course grading scopes
  (``oauth_client_allowed_scopes``), intersected by the hub with the user's own;
- the sandbox (``c.Autograder.sandbox``) comes through ``options``, e.g.
  ``{"Autograder.sandbox": "docker"}`` on the Docker tier.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...courses import Catalog, grading_scope
from ..base import PORTS, service_entry

__all__ = ["SERVICE_NAME", "course_grading_scopes", "grading_roles", "grading_service"]

SERVICE_NAME = "grading"


def course_grading_scopes(catalog: Catalog) -> list[str]:
    """Both grading scopes of every course (learner's first)."""
    return [grading_scope(c, role) for c in catalog for role in ("learner", "teacher")]


def grading_service(
    catalog: Catalog,
    *,
    catalog_path: str | Path,
    data_dir: str | Path,
    events_db: str = "",
    public_url: str = "http://127.0.0.1:8000",
    port: int = PORTS["grading"],
    options: Mapping[str, object] | None = None,
    service_name: str = SERVICE_NAME,
    python: str = sys.executable,
) -> dict:
    """The ``c.JupyterHub.services`` entry of the hub-managed grading service.

    ``data_dir`` holds its database and the gradings' scratch space; ``events_db`` is the
    event store's URL (its statements; empty: none); ``public_url`` the hub's address as
    people know it (the homePage of hub accounts in statements, as the hub's own have it).
    ``options`` are more traitlets settings, e.g. ``{"GradingQueue.workers": 2,
    "Autograder.sandbox": "bubblewrap", "Autograder.memory_limit": 2 * 1024**3}``.
    """
    settings = {
        "GradingService.data_dir": Path(data_dir).resolve(),
        "GradingQueue.home": public_url.rstrip("/"),
    }
    if events_db:
        settings["GradingService.events_db"] = events_db
    return service_entry(
        service_name,
        "hub_ext.services.grading",
        port=port,
        catalog_path=catalog_path,
        settings=settings,
        options=options,
        python=python,
        oauth_client_allowed_scopes=course_grading_scopes(catalog),
    )


def grading_roles(
    catalog: Catalog,
    *,
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    service_name: str = SERVICE_NAME,
) -> list[dict]:
    """Every course group may log in to the service (their course scopes decide what they
    may do there); admins get both scopes of every course."""
    access = f"access:services!service={service_name}"
    roles = [
        {
            "name": f"{service_name}-users",
            "description": "Course members may log in to the grading service (their course scopes decide the rest)",
            "scopes": [access],
            "groups": sorted(catalog.groups),
        }
    ]
    admins, groups = sorted(admin_users), sorted(admin_groups)
    if admins or groups:
        role = {
            "name": f"{service_name}-admins",
            "description": "Admins may fetch, submit, read and grade the assignments of every course",
            "scopes": [access, *course_grading_scopes(catalog)],
        }
        if admins:
            role["users"] = admins
        if groups:
            role["groups"] = groups
        roles.append(role)
    return roles
