"""Course authenticators: who may log in, and which course groups they belong to.

Course membership is expressed as JupyterHub groups (``course:<id>:learner`` and
``course:<id>:teacher``), kept in sync at every login by JupyterHub's ``manage_groups``.
:class:`CourseGroupsMixin` holds the enrollment-to-groups logic that every course
authenticator shares; the authenticators differ only in where identities come from.

- :class:`CourseDevAuthenticator`: a development login (username + shared password) for
  the demo and tests; groups come from the catalog's static rosters.
"""

from __future__ import annotations

from collections.abc import Iterable

from jupyterhub.auth import Authenticator
from jupyterhub.utils import maybe_future
from traitlets import Bool, Unicode, default
from traitlets.config import LoggingConfigurable

from .courses import CourseCatalog, parse_group

__all__ = ["CourseDevAuthenticator", "CourseGroupsMixin"]


class CourseGroupsMixin(LoggingConfigurable):
    """Derive a user's course groups from the catalog and from what the identity provider says.

    Mix in before an ``Authenticator`` subclass. ``manage_groups`` is on: the groups
    returned in the auth model replace the user's groups at every login.
    """

    require_enrollment = Bool(
        True,
        help="""Only let in users enrolled in at least one course (or admins).

        Default: True. Example: ``c.CourseDevAuthenticator.require_enrollment = False``
        """,
    ).tag(config=True)

    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    @property
    def catalog(self):
        return CourseCatalog.instance(config=self.config).catalog

    def course_groups(self, username: str, claimed: Iterable[str] = ()) -> set[str]:
        """The course groups of ``username``: the catalog's static lists plus ``claimed``.

        ``claimed`` are group names from another source (an identity provider's claim, a
        roster). Groups of courses not in the catalog are dropped with a warning.
        """
        groups = set(self.catalog.static_groups(username))
        for name in claimed:
            parsed = parse_group(name)
            if parsed is None:
                continue
            if parsed[0] not in self.catalog:
                self.log.warning(
                    "Ignoring group %s of %s: no such course in the catalog", name, username
                )
                continue
            groups.add(name)
        return groups

    async def check_allowed(self, username, authentication=None):
        if await maybe_future(super().check_allowed(username, authentication)):
            return True
        if username in self.admin_users:
            return True
        if not self.require_enrollment:
            return False
        groups = (authentication or {}).get("groups") or []
        if any(parse_group(g) for g in groups):
            return True
        self.log.warning("Refusing %s: not enrolled in any course", username)
        return False


class CourseDevAuthenticator(CourseGroupsMixin, Authenticator):
    """A development login: any name from the catalog's rosters, with one shared password.

    For the demo and tests only. Course groups come from the catalog's ``learners`` and
    ``teachers`` lists (and ``admin_users`` may log in too).
    """

    password = Unicode(
        help="""The one password every development account logs in with.

        Required (the hub refuses every login while it is empty).
        Example: ``c.CourseDevAuthenticator.password = "demo-password"``
        """,
    ).tag(config=True)

    @default("allow_all")
    def _default_allow_all(self):
        # check_allowed decides: enrolled users and admins
        return False

    def check_allow_config(self):
        super().check_allow_config()
        self.log.warning(
            "Using %s: a development login, not for production", self.__class__.__name__
        )

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        if not self.password or data.get("password") != self.password:
            return None
        if username not in self.catalog.static_users and username not in self.admin_users:
            self.log.warning("Refusing %s: not in the catalog's rosters", username)
            return None
        return {"name": username, "groups": sorted(self.course_groups(username))}
