"""What the hub's configuration must say about the course pages service.

In ``jupyterhub_config.py``, after the catalog is loaded::

    from hub_ext.services.courses.hubconfig import courses_roles, courses_service
    c.JupyterHub.services.append(courses_service(catalog, catalog_path="courses.yaml",
                                                 roster_dir="/srv/hub/rosters", port=10105))
    c.JupyterHub.load_roles.extend(courses_roles(catalog))

(:func:`hub_ext.hubconfig.configure_course_hub` does both.)

Least privilege:

- the service's own token (role ``service-courses``) may list the members of the courses'
  learner groups and read their names, activity and servers, and read those groups: each
  scope filtered ``!group=course:<id>:learner``. It cannot see a teacher, an admin or anyone
  outside a course, change anything, or open a server;
- a caller needs ``access:services!service=courses`` to log in (every course group has it,
  so a learner who opens a course page is told in course words why not, rather than by the
  hub's generic 403), and, for a course, :func:`course_page_scope`: the scope of the
  course's teacher role (``read:users:activity!group=course:<id>:learner``); admins hold it
  for every course through ``admin:users``;
- OAuth tokens the service receives carry at most those course scopes
  (``oauth_client_allowed_scopes``), intersected by the hub with the user's own.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from ...courses import Catalog, Course
from ..base import PORTS, service_entry

__all__ = ["SERVICE_NAME", "course_page_scope", "courses_roles", "courses_service"]

SERVICE_NAME = "courses"


def course_page_scope(course: Course | str) -> str:
    """The scope that opens a course's page: reading its learners' activity, which the
    course's teacher role (:func:`hub_ext.rbac.course_roles`) grants."""
    course_id = course if isinstance(course, str) else course.id
    return f"read:users:activity!group=course:{course_id}:learner"


def service_scopes(catalog: Catalog) -> list[str]:
    """The service token's scopes: the learner groups' members, read-only."""
    return [
        f"{scope}!group={c.learner_group}"
        for c in catalog.values()
        for scope in (
            "list:users",
            "read:users:name",
            "read:users:activity",
            "read:servers",
            "read:groups",
        )
    ]


def courses_service(
    catalog: Catalog,
    *,
    catalog_path: str | Path,
    roster_dir: str | Path = "",
    analytics_url: str = "",
    grading_url: str = "",
    port: int = PORTS["courses"],
    options: Mapping[str, object] | None = None,
    service_name: str = SERVICE_NAME,
    python: str = sys.executable,
) -> dict:
    """The ``c.JupyterHub.services`` entry of the hub-managed course pages service.

    ``roster_dir`` is where imported rosters are kept (the authenticator's
    ``roster_dir``); ``analytics_url`` / ``grading_url`` are the prefixes of those services
    when the hub runs them (the course page links to them), empty when it does not.
    ``options`` are more traitlets settings, e.g. ``{"CoursePages.fresh_seconds": 30}``.
    """
    given = {
        "CoursePages.roster_dir": Path(roster_dir).resolve() if roster_dir else "",
        "CoursePages.analytics_url": analytics_url,
        "CoursePages.grading_url": grading_url,
    }
    settings = {k: v for k, v in given.items() if v}  # the deployer's options may set them
    return service_entry(
        service_name,
        "hub_ext.services.courses",
        port=port,
        catalog_path=catalog_path,
        settings=settings,
        options=options,
        python=python,
        oauth_client_allowed_scopes=[course_page_scope(c) for c in catalog.values()],
    )


def courses_roles(catalog: Catalog, *, service_name: str = SERVICE_NAME, **_admins) -> list[dict]:
    """The service's own role, and the door for every course group (the course scope
    decides which pages; admins need no role of their own: ``admin:users`` covers it)."""
    return [
        {
            "name": f"service-{service_name}",
            "description": "The course pages read the courses' learners, their activity and servers",
            "scopes": service_scopes(catalog),
            "services": [service_name],
        },
        {
            "name": f"{service_name}-users",
            "description": "Course members may log in to the course pages (teachers see theirs)",
            "scopes": [f"access:services!service={service_name}"],
            "groups": sorted(catalog.groups),
        },
    ]
