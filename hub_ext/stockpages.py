"""What the hub's own pages say about a course: :class:`CourseWords`.

JupyterHub renders its stock pages (spawn pending, spawn failed, not running, the error
pages) from templates that know a user and a server name, not a course. The course hub's
overrides of those templates (``hub_ext/templates/``) ask :class:`CourseWords`, given to
them as the template variable ``course_words``, which course a page is about, its dates,
where it stands for this user, and why it cannot start. The wording itself is in the
templates (``course_macros.html``); this module only answers questions, without I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from .courses import Catalog, enrollments_from_groups
from .spawners.base import start_refusal

__all__ = ["CourseWords", "course_in_url"]


def course_in_url(url: str) -> tuple[str, str] | None:
    """``(username, server name)`` of a single-user URL (``/user/bob/hist100/tree``), looked
    for in ``url`` itself and in its ``next`` parameter (a spawn URL's ``?next=``); None if
    it names no server."""
    parts = urlsplit(url or "")
    candidates = [parts.path, *parse_qs(parts.query).get("next", [])]
    for path in candidates:
        _, found, rest = urlsplit(path).path.partition("/user/")
        if found:
            user, _, server = rest.partition("/")
            server = server.split("/", 1)[0]
            if user and server:
                return user, server
    return None


class CourseWords:
    """The course of a stock page, for its template. Not callable on purpose: JupyterHub
    calls a callable template variable with the user; the templates call its methods.

    Each method returns None when the page is not about a course of the catalog (then the
    template says what JupyterHub says), else a dict: ``id``, ``title``, ``description``,
    ``window`` (the dates in words), ``status`` (``upcoming``/``open``/``grace``/``closed``),
    ``owner`` (whose server), ``role`` (the owner's: ``learner``, ``teacher`` or None),
    ``refusal`` (why the owner may not start it now, the spawner's own words, or None) and
    ``reason`` (the refusal's reason: ``not_enrolled``, ``course_not_open``, ...).
    """

    def __init__(self, catalog: Catalog, *, now=None, teachers_before_opening: bool = True):
        self.catalog = catalog
        self.now = now or (lambda: datetime.now(UTC))
        self.teachers_before_opening = teachers_before_opening

    def server(self, owner, server_name: str = "", url: str = "") -> dict | None:
        """The course of ``owner``'s server ``server_name``, else of the server ``url`` names
        (JupyterHub's not-running page for ``/user/bob/hist100/`` has no server name when
        bob has no hist100 server yet: the course is in its spawn URL's ``next``)."""
        name = server_name
        if not name:
            named = course_in_url(url)
            if named is None or owner is None or named[0] != owner.name:
                return None
            name = named[1]
        if name not in self.catalog:
            return None
        return self._about(self.catalog[name], owner)

    def page(self, owner, server_name: str = "", url: str = "", exception=None) -> dict | None:
        """:meth:`server`, and ``failed``: the message of ``exception`` (the last start's
        failure, on JupyterHub's "spawn failed" page), for the not-running page."""
        about = self.server(owner, server_name, url)
        failure = self.refusal(exception, owner) if exception is not None else None
        if failure is None:
            return about
        return {**(about or failure), "failed": failure["refusal"]}

    def refusal(self, exception, user) -> dict | None:
        """The course a start refusal (a ``SpawnException`` from the course spawner, which
        gives it ``course_id``) is about, with the refusal's own message."""
        course_id = getattr(exception, "course_id", None)
        if not course_id:
            return None
        course = self.catalog.get(course_id)
        about = {
            "id": course_id,
            "title": course.title if course else "",
            "description": course.description if course else "",
            "window": course.describe_window() if course else "",
            "status": course.status(self.now()) if course else None,
            "owner": getattr(exception, "course_owner", None) or getattr(user, "name", None),
            "role": None,
            "refusal": getattr(exception, "message", "") or str(exception),
            "reason": getattr(exception, "reason", ""),
        }
        if course is not None and user is not None and about["owner"] == user.name:
            about["role"] = self._role(course, user)
        return about

    # ------------------------------------------------------------------ helpers

    def _role(self, course, user) -> str | None:
        return enrollments_from_groups(g.name for g in user.groups).get(course.id)

    def _about(self, course, owner) -> dict:
        role = self._role(course, owner)
        refused = start_refusal(
            course,
            role,
            self.now(),
            teachers_before_opening=self.teachers_before_opening,
            server_name=course.id,
            username=owner.name,
        )
        return {
            "id": course.id,
            "title": course.title,
            "description": course.description,
            "window": course.describe_window(),
            "status": course.status(self.now()),
            "owner": owner.name,
            "role": role,
            "refusal": refused.message if refused else None,
            "reason": refused.reason if refused else None,
        }
