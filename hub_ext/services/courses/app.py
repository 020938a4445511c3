"""The course pages service: each course's whole class, for its teachers and the admins.

Run by JupyterHub as a managed service (see :mod:`.hubconfig`)::

    python -m hub_ext.services.courses --CourseCatalog.path=courses.yaml \\
        --CoursePages.roster_dir=/srv/hub/rosters

Routes under the service prefix (``/services/courses/``):

=======  =========================================  ==========================================
verb     path                                       answers
=======  =========================================  ==========================================
GET      (the prefix)                               page: the courses the caller may see
GET      ``<course>/``                              page: the course's learners (one page)
GET      ``<course>/learners.csv``                  CSV: every learner the query matches
GET      ``api/courses``                            JSON: the courses the caller may see
GET      ``api/courses/<course>/learners``          JSON: one page of the course's learners
=======  =========================================  ==========================================

The learner routes take ``q`` (a part of the username or email), ``state`` (one of
:data:`~.classlist.STATES`), ``sort`` (:data:`~.classlist.SORTS`), ``order`` (``asc`` or
``desc``), ``page`` and ``per_page`` (at most 500); a bad one is a 400 naming it.

Who may see a course: a caller whose token holds the course's page scope
(:func:`.hubconfig.course_page_scope`, which its teachers and the admins have). Anyone
else, an unknown course, or a token made for something else is refused with a page (or
JSON for ``api/``) that says so in course words. The pages have no script: search, sort
and paging are links and a form, answered by the server from the cached hub state
(:mod:`.hubapi`), so a course of 5,000 learners sends one page of them.
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer, Unicode, default, validate

from ...courses import API_NAME_PATTERN, CatalogError, Course, CourseCatalog
from ..base import HubServiceApp
from ..hubauth import HubServiceHandler, NotFoundMixin, PageErrorsMixin
from .classlist import SORTS, STATES, ClassList, Query, QueryError, Rosters
from .hubapi import HubState, HubUnavailable
from .hubconfig import SERVICE_NAME, course_page_scope

__all__ = ["CoursePages", "main", "workspace_name"]

_ID = API_NAME_PATTERN.strip("^$")
TEMPLATES = Path(__file__).parent / "templates"
#: the columns of the table: (sort key, heading)
COLUMNS = (
    ("name", "Learner"),
    ("sources", "Enrolled by"),
    ("state", "State"),
    ("last_activity", "Last activity"),
)


def workspace_name(teacher: str) -> str:
    """The JupyterLab workspace a teacher opens a learner's server in (``teacher-tina``)."""
    return "teacher-" + (re.sub(r"[^a-z0-9]+", "-", teacher.lower()).strip("-") or "x")


class CoursePages(HubServiceApp):
    """Each course's whole class, its learners' state, searchable, for its teachers."""

    name = "hub-ext-courses"
    default_name = SERVICE_NAME
    description = __doc__.splitlines()[0]
    classes = [CourseCatalog]

    roster_dir = Unicode(
        "",
        config=True,
        help="""Directory of the rosters imported with ``hub-ext import-roster`` (its
        ``rosters.json``): the authenticator's ``roster_dir``. Default: empty (the
        catalog's ``learners:`` lists and ``rosters:`` files only). Example:
        ``c.CoursePages.roster_dir = "/srv/jupyterhub/rosters"``""",
    )
    analytics_url = Unicode(
        "",
        config=True,
        help="""Prefix of the analytics service; each course page links to
        ``<prefix><course>/``. Default: empty (no link). Example:
        ``c.CoursePages.analytics_url = "/services/analytics/"``""",
    )
    grading_url = Unicode(
        "",
        config=True,
        help="""Prefix of the grading service; a course with assignments links to
        ``<prefix>courses/<course>/gradebook``. Default: empty (no link). Example:
        ``c.CoursePages.grading_url = "/services/grading/"``""",
    )

    @validate("analytics_url", "grading_url")
    def _trailing_slash(self, proposal):
        value = proposal["value"]
        return value.rstrip("/") + "/" if value else ""

    fresh_seconds = Float(
        10.0,
        config=True,
        help="""Seconds a reading of the hub's users is used as it is. Default: 10.
        Example: ``c.CoursePages.fresh_seconds = 30``""",
    )
    stale_seconds = Float(
        120.0,
        config=True,
        help="""Seconds an older reading is still shown while a new one is made in the
        background; past that, a page waits for the new one. Default: 120.""",
    )
    hub_cache_max_age = Integer(
        60,
        config=True,
        help="""Seconds the service trusts the hub's answer about a caller's token (its
        owner and scopes) before asking again. Default: 60.""",
    )
    hub_api_url = Unicode(
        config=True,
        help="""The hub's REST API. Default: ``$JUPYTERHUB_API_URL`` (set by the hub for
        its managed services), else ``http://127.0.0.1:8081/hub/api``.""",
    )

    @default("hub_api_url")
    def _default_hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    hub_base_url = Unicode(
        config=True,
        help="""The hub's public prefix, for links to servers (``<prefix>user/...``).
        Default: ``$JUPYTERHUB_BASE_URL``, else ``/``.""",
    )

    @default("hub_base_url")
    def _default_hub_base_url(self):
        return os.environ.get("JUPYTERHUB_BASE_URL", "/")

    def initialize(self, argv=None):
        super().initialize(argv)
        self.catalog = CourseCatalog.instance(parent=self).catalog
        self.rosters = Rosters(self.catalog, self.roster_dir, log=self.log)
        scopes = [course_page_scope(c) for c in self.catalog.values()]
        self.hub_auth = self.make_hub_auth(scopes, self.hub_cache_max_age)
        self.hub_state = HubState(
            api_url=self.hub_api_url,
            token=self.hub_auth.api_token,
            groups=[c.learner_group for c in self.catalog.values()],
            fresh_seconds=self.fresh_seconds,
            stale_seconds=self.stale_seconds,
            log=self.log,
        )
        self._lists: dict[str, tuple[tuple, ClassList]] = {}
        self.web_app = self.make_app()

    def make_app(self) -> web.Application:
        p = self.base_url.rstrip("/")
        course = f"({_ID})"
        handlers = [
            (p + r"/?", IndexPage),
            (p + r"/oauth_callback", HubOAuthCallbackHandler),
            (p + r"/api/courses/?", CoursesAPI),
            (p + rf"/api/courses/{course}/learners", LearnersAPI),
            (p + r"/api/.*", NotFoundAPI),
            (p + r"/([^/]+)/?", CoursePage),
            (p + r"/([^/]+)/learners\.csv", LearnersCSV),
            (p + r"/.*", NotFoundPage),
        ]
        return self.web_application(handlers, self.hub_auth, template_path=str(TEMPLATES))

    def server_url(self, course: Course):
        base = self.hub_base_url.rstrip("/")
        return lambda name: f"{base}/user/{quote(name, safe='')}/{course.id}/"

    async def class_list(self, course: Course) -> ClassList:
        """The course's learners now (rebuilt when the hub's state or a roster changes)."""
        snapshot = await self.hub_state.snapshot()
        entries = await asyncio.to_thread(self.rosters.entries)
        key = (snapshot.taken_at, id(entries))
        cached = self._lists.get(course.id)
        if cached is None or cached[0] != key:
            built = ClassList.build(
                course,
                roster_entries=entries,
                group_members=snapshot.groups.get(course.learner_group, ()),
                users=snapshot.users,
                server_url=self.server_url(course),
                as_of=snapshot.taken_at,
            )
            cached = (key, built)
            self._lists[course.id] = cached
        return cached[1]

    async def serve(self) -> None:
        server = HTTPServer(self.web_app, xheaders=True)
        server.listen(self.port, self.ip)
        self.log.info("Course pages at http://%s:%d%s", self.ip, self.port, self.base_url)
        await self.until_stopped()
        server.stop()

    def start(self):
        asyncio.run(self.serve())


# ------------------------------------------------------------------------ handlers


def _when(value: str | None) -> str:
    """An ISO 8601 time from the hub as a person reads it (UTC, to the minute)."""
    if not value:
        return "never"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class BaseHandler(HubServiceHandler):
    """Identify the caller; find the course; check its page scope."""

    other_scopes = "a course's page scope (read:users:activity!group=course:<id>:learner)"

    @property
    def service(self) -> CoursePages:
        return self.settings["service"]

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'",
        )

    def may_see(self, user: dict, course: Course) -> bool:
        return bool(self.hub_auth.check_scopes({course_page_scope(course)}, user))

    def visible_courses(self, user: dict) -> list[Course]:
        return [c for c in self.service.catalog.values() if self.may_see(user, c)]

    def entry(self, course_id: str) -> tuple[dict, Course] | None:
        """(caller, course) when the caller may see the course; else None after answering:
        404 for a course the catalog does not have, 403 for one the caller does not teach."""
        user = self.require_user()
        if user is None:
            return None
        course = self.service.catalog.get(course_id)
        if course is None:
            self.fail(
                404,
                "no_such_course",
                f"There is no course {course_id!r} on this hub. The courses you teach are "
                f"listed on the course pages' front page.",
            )
            return None
        if not self.may_see(user, course):
            self.fail(
                403,
                "not_a_teacher",
                f"The learners of {course.title} ({course.id}) are shown to its teachers and "
                f"the hub's admins only, and {user['name']} is neither (this sign-in "
                f"lacks {course_page_scope(course)}). If you teach {course.id}, ask the hub's "
                f"admins to add you to its teachers.",
            )
            return None
        return user, course

    def query(self) -> Query | None:
        """The request's search/sort/page, or None after a 400 naming the parameter."""
        args = {k: self.get_argument(k) for k in self.request.arguments}
        try:
            return Query.parse(args)
        except QueryError as e:
            self.fail(400, "bad_query", str(e), field=e.field)
            return None

    async def class_list(self, course: Course) -> ClassList | None:
        try:
            return await self.service.class_list(course)
        except HubUnavailable as e:
            self.log.error("Course page of %s: %s", course.id, e)
            self.fail(
                503,
                "hub_unavailable",
                f"The hub did not tell who is in {course.id} just now ({e}). Try again in a "
                f"moment.",
            )
            return None

    async def learners(self, course_id: str) -> tuple[dict, Course, Query, ClassList] | None:
        """(caller, course, their query, the class list) for a learner route; else None
        after answering (see :meth:`entry`, :meth:`query`, :meth:`class_list`)."""
        found = self.entry(course_id)
        query = found and self.query()
        if query is None:
            return None
        class_list = await self.class_list(found[1])
        if class_list is None:
            return None
        return (*found, query, class_list)

    def look_url(self, server_url: str | None, user: dict) -> str | None:
        """Where the caller opens a learner's running server: JupyterLab in a workspace of
        the caller's own, so neither's open tabs replace the other's."""
        if not server_url:
            return None
        return f"{server_url}lab/workspaces/{workspace_name(user['name'])}"

    def course_links(self, course: Course) -> dict[str, str]:
        service = self.service
        links = {
            "page": f"{service.base_url}{course.id}/",
            "learners": f"{service.base_url}api/courses/{course.id}/learners",
            "csv": f"{service.base_url}{course.id}/learners.csv",
        }
        if service.analytics_url:
            links["analytics"] = f"{service.analytics_url}{course.id}/"
        if service.grading_url and course.assignments:
            links["gradebook"] = f"{service.grading_url}courses/{course.id}/gradebook"
        return links


class PageHandler(PageErrorsMixin, BaseHandler):
    """A page: refusals and errors are pages too, in the same words as the JSON ones."""

    titles = {
        400: "That search cannot be made",
        401: "Please log in",
        403: "Not a course page of yours",
        404: "No such course",
        503: "The hub is busy",
    }

    def wants_html(self) -> bool:
        return True

    def require_user(self) -> dict | None:
        """The caller; anyone else is sent to log in, whatever their browser accepts."""
        if not self._finished and not self.current_user and self.request.method == "GET":
            self.redirect(self.get_login_url())
            return None
        return super().require_user()

    def get_template_namespace(self):
        ns = super().get_template_namespace()
        ns.update(
            front=self.service.base_url,
            home=self.service.hub_base_url.rstrip("/") + "/hub/home",
            when=_when,
        )
        return ns


class NotFoundAPI(NotFoundMixin, BaseHandler):
    pass


class NotFoundPage(NotFoundMixin, PageHandler):
    pass


class IndexPage(PageHandler):
    async def get(self):
        user = self.require_user()
        if user is None:
            return
        courses = self.visible_courses(user)
        self.render(
            "index.html",
            user=user["name"],
            courses=[(c, self.course_links(c)) for c in courses],
            status=lambda c: c.status(),
        )


class CoursesAPI(BaseHandler):
    async def get(self):
        user = self.require_user()
        if user is None:
            return
        courses = [
            {"id": c.id, "title": c.title, "status": c.status(), "links": self.course_links(c)}
            for c in self.visible_courses(user)
        ]
        self.answer({"user": user["name"], "courses": courses})


class LearnersAPI(BaseHandler):
    async def get(self, course_id):
        found = await self.learners(course_id)
        if found is None:
            return
        user, course, query, class_list = found
        page = class_list.page(query)
        learners = []
        for r in page["learners"]:
            view = r.view()
            view["look_url"] = self.look_url(r.server_url, user)
            learners.append(view)
        base = self.course_links(course)["learners"]

        def link(n):
            return f"{base}?{urlencode(query.args(page=n))}" if 1 <= n <= page["pages"] else None

        self.answer(
            {
                **page,
                "learners": learners,
                "counts": class_list.counts(),
                "as_of": datetime.fromtimestamp(class_list.as_of, UTC).isoformat(),
                "links": {"next": link(query.page + 1), "prev": link(query.page - 1)},
            }
        )


class LearnersCSV(PageHandler):
    async def get(self, course_id):
        found = await self.learners(course_id)
        if found is None:
            return
        query, class_list = found[2:]
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{course_id}-learners.csv"')
        self.finish(class_list.csv(query))


class CoursePage(PageHandler):
    async def get(self, course_id):
        found = await self.learners(course_id)
        if found is None:
            return
        user, course, query, class_list = found
        page = class_list.page(query)
        page_url = self.course_links(course)["page"]

        def url(**changes) -> str:
            args = query.args(**changes)
            return page_url + ("?" + urlencode(args) if args else "")

        def sort_url(key: str) -> str:
            order = "desc" if query.sort == key and query.order == "asc" else "asc"
            return url(sort=key, order=order, page=1)

        first = (page["page"] - 1) * page["per_page"] + 1
        self.render(
            "course.html",
            user=user["name"],
            course=course,
            links=self.course_links(course),
            query=query,
            page=page,
            first=first,
            last=first + len(page["learners"]) - 1,
            counts=class_list.counts(),
            states=STATES,
            columns=COLUMNS,
            sorts=SORTS,
            url=url,
            sort_url=sort_url,
            filtered_csv=self.course_links(course)["csv"]
            + "?"
            + urlencode({k: v for k, v in (("q", query.q), ("state", query.state)) if v}),
            look_url=lambda r: self.look_url(r.server_url, user),
            workspace=workspace_name(user["name"]),
            as_of=datetime.fromtimestamp(class_list.as_of, UTC).strftime("%H:%M:%S UTC"),
            roster_problem=bool(self.service.rosters.problem),
        )


def main(argv=None):
    app = CoursePages.instance()
    try:
        app.initialize(argv)
    except CatalogError as e:
        raise SystemExit(f"The course pages cannot read the course catalog:\n{e}") from None
    app.start()
