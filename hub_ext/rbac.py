"""JupyterHub RBAC from the course catalog: teacher roles, custom scopes, server shares.

Roles reach a user's servers all at once (a ``!group=`` filter covers every server of
every member), so "looking over a learner's shoulder" is limited to the one course
server through JupyterHub's shares instead: see :func:`share_course_server`.
"""

from __future__ import annotations

from .courses import Catalog, Course, analytics_scope, teacher_role

__all__ = ["course_roles", "course_scopes", "share_course_server"]


def course_roles(catalog: Catalog) -> list[dict]:
    """One role per course, granted to the course's teacher group.

    A teacher may list and read the course's learners and their activity, and call the
    course's analytics APIs. Opening a learner's course server goes through JupyterHub's
    shares of that one server, not through a role: a role's ``!group=`` filter would reach
    all of the learner's servers, in every course.
    """
    roles = []
    for course in catalog.values():
        learners = f"group={course.learner_group}"
        roles.append(
            {
                "name": teacher_role(course.id),
                "description": f"Teachers of {course.id}: its learners, their activity, its analytics",
                "scopes": [
                    f"list:users!{learners}",
                    f"read:users!{learners}",
                    f"read:users:activity!{learners}",
                    f"read:groups!{learners}",
                    f"read:servers!{learners}",
                    analytics_scope(course.id),
                ],
                "groups": [course.teacher_group],
            }
        )
    return roles


def course_scopes(catalog: Catalog) -> dict[str, dict]:
    """The custom scopes the catalog's courses need (``c.JupyterHub.custom_scopes``)."""
    return {
        analytics_scope(c.id): {"description": f"Call the analytics APIs of {c.id} ({c.title})"}
        for c in catalog.values()
    }


async def share_course_server(spawner, course: Course) -> None:
    """Called by the course spawner once ``spawner`` (a learner's ``course`` server) has started.

    Placeholder seam: shares with the course's teacher group land with the identity work.
    """
