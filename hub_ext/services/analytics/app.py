"""The analytics service: the hub-managed front door of the course notebooks' JSON APIs.

Run by JupyterHub as a managed service (see :mod:`hub_ext.services.analytics.hubconfig`)::

    python -m hub_ext.services.analytics --CourseCatalog.path=courses.yaml

Routes, under the service prefix (``/services/analytics/``):

``GET  /`` or ``/_api/catalog``
    The APIs the caller may call (courses whose analytics scope they hold), with routes.
``GET  /<course>/`` and ``/<course>/<name>/``
    The course's APIs (or one), as a page for a browser (``Accept: text/html``): each route
    with a form for its parameters, its answer drawn by shape (a Vega-Lite chart, a sortable
    table, a definition list) and its JSON one click away; as JSON for a program (the APIs,
    each route with the parameters its notebook documents, :mod:`.docs`). The chart
    libraries are served from ``/_static/`` (copied there by ``make setup``).
``PUT  /_api/courses/<course>/apis/<name>`` (body: the ``.ipynb``)
    Check, start, and publish (or replace) a notebook; 400 with every problem if refused,
    422 naming the setup cell if it raises. ``DELETE`` withdraws; ``GET`` describes.
``<VERB> /<course>/<name>/<route>``
    Call the API: proxied to the notebook's gateway with the gateway's own token (which
    never leaves the server); GET answers cached with ETag / 304. Always JSON (or what the
    notebook answers), whoever asks: the pages fetch these same URLs.

Callers are identified by the hub: OAuth for browsers (``HubOAuthenticated``), hub API
tokens for scripts. Access to a course's APIs needs ``analytics_scope(course)``
(``custom:analytics:course:<id>``), which the hub grants the course's teachers and the
admins. Every error is JSON ``{error, message, request_id}`` (a notebook's own error
answers too: the service adds what they lack), or, for a browser's page, a page saying it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from pathlib import Path
from urllib.parse import urlencode

from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
)
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from traitlets import Any, Bool, Float, Integer, Unicode

from ...courses import API_NAME_PATTERN, CatalogError, CourseCatalog, analytics_scope
from ..base import HubServiceApp
from ..hubauth import HubServiceHandler, NotFoundMixin, PageErrorsMixin
from .cache import CachedResponse, ResponseCache, ThrottledWatermark, cache_key, make_etag
from .docs import api_docs, markdown_html
from .extracts import CourseExtracts
from .notebook import CheckedNotebook, NotebookError, check_notebook
from .supervisor import GatewayFailed, GatewaySupervisor
from .unixhttp import gateway_client

__all__ = ["AnalyticsService", "main"]

_NAME = re.compile(API_NAME_PATTERN)
#: the only headers of a notebook's answer that reach the caller (the rest are dropped)
PASSED_HEADERS = ("content-type", "content-language")
#: media types a notebook may answer with: data, never something a browser executes
SAFE_MEDIA_TYPES = ("application/json", "text/csv", "text/plain")
#: every answer of the front door: inert, whatever a notebook says
INERT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


#: the pages' policy: our scripts and styles only, data from this origin only (no eval: the
#: charts use Vega's expression interpreter)
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: what an error page says first, by status
HEADLINES = {
    400: "The request was refused",
    401: "Please log in",
    403: "You may not see this page",
    404: "Nothing here",
    405: "Not for a browser",
    503: "Not ready yet",
    504: "The analysis took too long",
}
HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: what ``make setup`` copies from node_modules into STATIC (see the Makefile's chart-libs)
CHART_LIBS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
#: an API's documentation is read once per notebook published
_api_docs = functools.lru_cache(maxsize=256)(api_docs)


def safe_media_type(content_type: str) -> bool:
    """True for JSON (``application/json``, ``application/*+json``), CSV and plain text."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in SAFE_MEDIA_TYPES or (
        media.startswith("application/") and media.endswith("+json")
    )


class AnalyticsService(HubServiceApp):
    """Publishes course notebooks as JSON APIs behind the hub's identity and scopes."""

    name = "hub-ext-analytics"
    default_name = "analytics"
    description = __doc__.splitlines()[0]
    classes = [GatewaySupervisor, CourseCatalog, CourseExtracts]

    publish_catalog_notebooks = Bool(
        True,
        config=True,
        help="""Publish the notebooks the catalog lists for each course at start.
        Default: True. Example: ``c.AnalyticsService.publish_catalog_notebooks = False``""",
    )
    data_dir = Unicode(
        config=True,
        help="""Where notebooks published at runtime are kept, so a restart of the service
        serves them again (and withdrawn catalog notebooks stay withdrawn). Default:
        ``published`` under ``c.GatewaySupervisor.runtime_dir``.
        Example: ``c.AnalyticsService.data_dir = "/srv/jupyterhub/analytics-published"``""",
    )
    cache_entries = Integer(
        2000,
        config=True,
        help="""Most GET answers kept in the cache. 0 turns the cache off. Default: 2000.
        Example: ``c.AnalyticsService.cache_entries = 10000``""",
    )
    cache_bytes = Integer(
        64 * 1024 * 1024,
        config=True,
        help="""Most bytes of GET answers kept in the cache. Default: 64 MiB.
        Example: ``c.AnalyticsService.cache_bytes = 256 * 1024 * 1024``""",
    )
    cache_ttl = Float(
        300.0,
        config=True,
        help="""Seconds a cached answer may be served even if the watermark did not move
        (a bound for data the watermark does not see). 0: no bound. Default: 300.
        Example: ``c.AnalyticsService.cache_ttl = 60``""",
    )
    events_url = Unicode(
        "",
        config=True,
        help="""Read-only SQLAlchemy URL of the event store. The service reads it to build
        each course's read-only extract (:mod:`.extracts`); notebooks never get it.
        Default: empty (every course's extract is empty).
        Example: ``c.AnalyticsService.events_url = "sqlite:///file:/srv/events.sqlite?mode=ro&uri=true"``""",
    )
    watermark = Any(
        None,
        allow_none=True,
        config=True,
        help="""The data watermark: a callable ``f(course_id) -> str`` (or an awaitable str)
        that changes whenever the data the notebooks read changes; it is part of every cache
        key. Default: the generation of the course's extract (per course: new events in one
        course refresh only that course's answers).
        Example: ``c.AnalyticsService.watermark = FileWatermark("/srv/events.db", "/srv/events.db-wal")``""",
    )
    watermark_interval = Float(
        1.0,
        config=True,
        help="""Seconds between two readings of the watermark for one course: new events
        reach callers within this time. Default: 1. Example:
        ``c.AnalyticsService.watermark_interval = 5``""",
    )
    hub_cache_max_age = Integer(
        60,
        config=True,
        help="""Seconds the service trusts the hub's answer about a token (its owner and
        scopes) before asking again. Default: 60.
        Example: ``c.AnalyticsService.hub_cache_max_age = 30``""",
    )
    publish_max_bytes = Integer(
        20 * 1024 * 1024,
        config=True,
        help="""Largest notebook accepted by the publish API, in bytes. Default: 20 MiB.""",
    )

    # ------------------------------------------------------------------ setup

    def initialize(self, argv=None):
        super().initialize(argv)
        self.catalog = CourseCatalog.instance(parent=self).catalog
        self.supervisor = GatewaySupervisor(parent=self, log=self.log)
        if not self.data_dir:
            self.data_dir = str(Path(self.supervisor.runtime_dir) / "published")
        self.extracts = CourseExtracts(
            parent=self,
            log=self.log,
            store_url=self.events_url,
            root=self.supervisor.data_root,
            check_interval=self.watermark_interval,
        )
        if self.supervisor.sandbox in ("docker", "kube"):
            # the container's user is not the service's: it reads through the mount
            self.extracts.file_mode, self.extracts.dir_mode = 0o644, 0o755
        source = self.watermark
        self.watermark_source = (
            ThrottledWatermark(source, self.watermark_interval) if source else None
        )
        self.cache = ResponseCache(
            max_entries=self.cache_entries, max_bytes=self.cache_bytes, ttl=self.cache_ttl
        )
        # gateways answer on Unix sockets: the supervisor's resolver knows them
        self.http = gateway_client(self.supervisor.resolver, max_clients=512)
        #: (course, name) -> {"state": "starting"|"failed", "message": ..., "problems": [...]}
        self.pending: dict[str, dict] = {}
        # a course's scope in a hub token is enough: access is decided per course
        self.hub_auth = self.make_hub_auth(
            (analytics_scope(cid) for cid in self.catalog), self.hub_cache_max_age
        )
        self.web_app = self.make_app()
        missing = [f for f in CHART_LIBS if not (STATIC / f).is_file()]
        if missing:
            self.log.warning(
                "The analytics pages' chart libraries are missing from %s (%s): run `make "
                "setup`; until then the pages show charts' data as tables",
                STATIC,
                ", ".join(missing),
            )

    def make_app(self) -> web.Application:
        prefix = self.base_url.rstrip("/")
        name = f"({API_NAME_PATTERN.strip('^$')})"  # course ids follow the same rule
        handlers = [
            (prefix + r"/?", CatalogHandler),
            (prefix + r"/_api/catalog", CatalogHandler),
            (prefix + r"/_api/courses/([^/]+)/apis/([^/]+)", PublishHandler),
            (prefix + r"/oauth_callback", HubOAuthCallbackHandler),
            (prefix + rf"/{name}/?", CourseHandler),
            (prefix + rf"/{name}/{name}(/.*)?", APIHandler),
            (prefix + r"/.*", NotFoundHandler),
        ]
        return self.web_application(
            handlers,
            self.hub_auth,
            template_path=str(TEMPLATES),
            static_path=str(STATIC),
            # "_static": "_" is in no course id or API name, so no course can shadow it
            static_url_prefix=prefix + "/_static/",
            static_handler_class=StaticHandler,
        )

    # ------------------------------------------------------------------ publishing

    def key(self, course: str, name: str) -> str:
        return f"{course}/{name}"

    def url_for(self, course: str, name: str) -> str:
        return url_path_join(self.base_url, course, name) + "/"

    def course_apis(self, course: str) -> list[dict]:
        """The course's APIs, running or not: (name, url, state, message, routes, docs)."""
        apis = {}
        for key, state in self.pending.items():
            c, name = key.split("/", 1)
            if c == course:
                apis[name] = {
                    "course": c,
                    "name": name,
                    "url": self.url_for(c, name),
                    "routes": [],
                    **state,
                }
        for gateway in self.supervisor.gateways.values():
            if gateway.spec.course_id == course:
                apis[gateway.spec.api_name] = self.describe_api(gateway)
        return [apis[name] for name in sorted(apis)]

    def describe_api(self, gateway) -> dict:
        """What the catalog says of a running API, with what its notebook documents."""
        doc = _api_docs(gateway.notebook)
        described = gateway.describe()
        return {
            **described,
            "url": self.url_for(gateway.spec.course_id, gateway.spec.api_name),
            "title": doc.title,
            "intro": doc.intro,
            "routes": [r.as_dict() for r in doc.routes],
        }

    def _stored(self, course: str, name: str) -> Path:
        return Path(self.data_dir) / course / f"{name}.ipynb"

    def _withdrawn_marker(self, course: str, name: str) -> Path:
        return Path(self.data_dir) / course / f"{name}.withdrawn"

    async def publish(self, course: str, name: str, nb: CheckedNotebook, *, store: bool = True):
        key = self.key(course, name)
        self.pending[key] = {"state": "starting", "message": "", "version": nb.version}
        try:
            gateway = await self.supervisor.publish(
                course, name, nb, course_env=self.catalog[course].env
            )
        except GatewayFailed as e:
            self.pending[key] = {
                "state": "failed",
                "message": str(e),
                "detail": e.detail,
                "version": nb.version,
            }
            raise
        self.pending.pop(key, None)
        self.cache.drop_api(course, name)
        if store:
            await asyncio.to_thread(self._store, course, name, nb.raw)
        return gateway

    def _store(self, course: str, name: str, raw: bytes) -> None:
        path = self._stored(course, name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.with_suffix(".tmp").write_bytes(raw)
        path.with_suffix(".tmp").replace(path)
        self._withdrawn_marker(course, name).unlink(missing_ok=True)

    async def withdraw(self, course: str, name: str) -> bool:
        found = await self.supervisor.withdraw(course, name)
        found = self.pending.pop(self.key(course, name), None) is not None or found
        self.cache.drop_api(course, name)

        def forget():
            self._stored(course, name).unlink(missing_ok=True)
            marker = self._withdrawn_marker(course, name)
            marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            marker.touch()

        await asyncio.to_thread(forget)
        return found

    def startup_notebooks(self) -> list[tuple[str, str, Path, bool]]:
        """(course, name, path, from_catalog) to publish at start: the catalog's, then runtime ones."""
        todo: dict[tuple[str, str], tuple[Path, bool]] = {}
        if self.publish_catalog_notebooks:
            for course in self.catalog.values():
                for nb in course.notebooks:
                    todo[(course.id, nb.name)] = (nb.path, True)
        root = Path(self.data_dir)
        if root.is_dir():
            for course_dir in sorted(
                p for p in root.iterdir() if p.is_dir() and p.name in self.catalog
            ):
                for marker in course_dir.glob("*.withdrawn"):
                    todo.pop((course_dir.name, marker.stem), None)
                for path in course_dir.glob("*.ipynb"):
                    todo[(course_dir.name, path.stem)] = (path, False)
        return [(c, n, p, f) for (c, n), (p, f) in todo.items()]

    async def publish_startup_notebooks(self) -> None:
        limit = asyncio.Semaphore(2)  # kernels are CPU-heavy to start

        async def one(course, name, path, from_catalog):
            key = self.key(course, name)
            try:
                nb = check_notebook(path, str(path))
            except (OSError, NotebookError) as e:
                problems = [p.as_dict() for p in getattr(e, "problems", [])]
                self.pending[key] = {"state": "failed", "message": str(e), "problems": problems}
                self.log.error("Analytics API %s refused: %s", key, e)
                return
            async with limit:
                try:
                    await self.publish(course, name, nb, store=False)
                    self.log.info("Analytics API %s published (version %s)", key, nb.version)
                except GatewayFailed as e:
                    self.log.error("Analytics API %s failed to start: %s", key, e)

        todo = self.startup_notebooks()
        if not self.supervisor.isolated:
            # no sandbox: the institution's vetted notebooks only, never a teacher's upload
            for course, name, _path, from_catalog in todo:
                if not from_catalog:
                    self.log.error(
                        "Analytics API %s/%s (published at runtime) not started: %s",
                        course,
                        name,
                        self.supervisor.sandbox_problem,
                    )
            todo = [item for item in todo if item[3]]
        for course, name, _, _ in todo:
            self.pending[self.key(course, name)] = {"state": "starting", "message": ""}
        for course in self.catalog:
            try:
                await self.extracts.ensure(course)
            except Exception:
                self.log.exception(
                    "Extract of %s could not be built: its notebooks see no data", course
                )
        await asyncio.gather(*(one(*item) for item in todo))

    # ------------------------------------------------------------------ running

    async def watermark_for(self, course: str) -> str | None:
        try:
            if self.watermark_source is None:
                return await self.extracts.refresh(course)
            return await self.watermark_source(course)
        except Exception as e:
            self.log.warning("Watermark of %s unavailable (%s): not caching", course, e)
            return None

    async def serve(self) -> None:
        # The sandbox is made and checked first, off the event loop (a Docker engine is
        # asked over HTTP; leftovers of a previous run are removed), before any request.
        await asyncio.to_thread(lambda: self.supervisor.backend)
        server = HTTPServer(self.web_app, xheaders=True)
        server.listen(self.port, self.ip)
        self.log.info("Analytics service at http://%s:%d%s", self.ip, self.port, self.base_url)
        startup = asyncio.ensure_future(self.publish_startup_notebooks())
        await self.until_stopped()
        self.log.info("Stopping: every gateway")
        server.stop()
        startup.cancel()
        await self.supervisor.stop_all()
        self.extracts.close()
        self.http.close()

    def start(self):
        asyncio.run(self.serve())


# ------------------------------------------------------------------------ handlers


class BaseHandler(PageErrorsMixin, HubServiceHandler):
    """Identify the caller through the hub (token or OAuth cookie); JSON errors (a page for a
    browser); inert."""

    other_scopes = "a course's analytics scope"
    titles = HEADLINES
    refusal_title = HEADLINES[400]
    error_title = "The analytics could not answer"

    @property
    def service(self) -> AnalyticsService:
        return self.settings["service"]

    def set_default_headers(self):
        super().set_default_headers()
        for name, value in INERT_HEADERS.items():
            self.set_header(name, value)

    def may_call(self, user: dict, course: str) -> bool:
        return bool(self.hub_auth.check_scopes({analytics_scope(course)}, user))

    def describe(self, gateway) -> dict:
        return {
            **gateway.describe(),
            "url": self.service.url_for(gateway.spec.course_id, gateway.spec.api_name),
        }

    def render_page(self, template: str, **namespace) -> None:
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Vary", "Accept, Authorization, Cookie")
        self.set_header("Cache-Control", "private, no-cache")
        self.render(
            template,
            prefix=self.service.base_url,
            hub_home=url_path_join(self.hub_auth.hub_prefix, "home"),
            # the name the hub gave (set in prepare; current_user may not be known yet)
            user_name=getattr(self, "_hub_user_name", None),
            chart_libs=CHART_LIBS if all((STATIC / f).is_file() for f in CHART_LIBS) else (),
            markdown_html=markdown_html,
            **{"request_id": self.request_id, **namespace},
        )


class NotFoundHandler(NotFoundMixin, BaseHandler):
    pass


class StaticHandler(web.StaticFileHandler):
    """The pages' scripts, styles and the chart libraries: public, inert, cached for long
    (tornado's ``static_url`` adds the version to each URL)."""

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")


class CourseHandler(BaseHandler):
    """A course's APIs: a page for a browser, their routes and parameters for a program."""

    async def get(self, course):
        user = self.require_user()
        if not user:
            return
        service = self.service
        if course not in service.catalog or not self.may_call(user, course):
            # the same answer for "no such course" and "not yours": no course enumeration
            return self.fail(
                403, "forbidden", f"{user['name']} may not see the analytics of course {course!r}"
            )
        apis = service.course_apis(course)
        title = service.catalog[course].title
        if self.wants_html():
            return self.render_page("course.html", course=course, title=title, apis=apis, one=None)
        self.set_header("Vary", "Accept, Authorization, Cookie")
        self.finish({"course": course, "title": title, "apis": apis})


class CatalogHandler(BaseHandler):
    """The APIs the caller may use, with their routes; for a browser, a page of the caller's
    courses and their APIs."""

    async def get(self):
        user = self.require_user()
        if not user:
            return
        service = self.service
        apis = []
        for gateway in service.supervisor.gateways.values():
            if self.may_call(user, gateway.spec.course_id):
                apis.append(self.describe(gateway))
        for key, state in service.pending.items():
            course, name = key.split("/", 1)
            if key not in service.supervisor.gateways and self.may_call(user, course):
                apis.append(
                    {
                        "course": course,
                        "name": name,
                        "url": service.url_for(course, name),
                        "routes": [],
                        **state,
                    }
                )
        apis.sort(key=lambda a: (a["course"], a["name"]))
        courses = [c for c in service.catalog if self.may_call(user, c)]
        if self.wants_html():
            return self.render_page(
                "index.html",
                courses=[
                    {
                        "id": c,
                        "title": service.catalog[c].title,
                        "apis": [a for a in apis if a["course"] == c],
                    }
                    for c in courses
                ],
            )
        self.set_header("Vary", "Accept, Authorization, Cookie")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"user": user["name"], "courses": courses, "apis": apis}))


class PublishHandler(BaseHandler):
    """PUT publishes or replaces, DELETE withdraws, GET describes one API."""

    def _allowed(self, course: str, name: str) -> dict | None:
        user = self.require_user()
        if not user:
            return None
        if not _NAME.match(name):
            self.fail(
                400,
                "bad_name",
                f"API name {name!r}: use lowercase letters, digits and dashes, 2-32 characters",
            )
            return None
        if course not in self.service.catalog or not self.may_call(user, course):
            # the same answer for "no such course" and "not yours": no course enumeration
            self.fail(
                403, "forbidden", f"{user['name']} may not publish analytics for course {course!r}"
            )
            return None
        return user

    async def get(self, course, name):
        if not self._allowed(course, name):
            return
        gateway = self.service.supervisor.gateways.get(self.service.key(course, name))
        if gateway is None:
            state = self.service.pending.get(self.service.key(course, name))
            if state:
                return self.finish({"course": course, "name": name, **state})
            return self.fail(404, "not_found", f"no API {name!r} in course {course!r}")
        self.finish(self.describe(gateway))

    async def put(self, course, name):
        user = self._allowed(course, name)
        if not user:
            return
        if not self.service.supervisor.isolated:
            return self.fail(
                403,
                "no_sandbox",
                "publishing notebooks at runtime needs a sandbox, and none can be made on "
                f"this hub: {self.service.supervisor.sandbox_problem or 'the sandbox is off'}. "
                "Only the notebooks listed in the course catalog run here; ask the hub's "
                "administrators to enable a sandbox (c.GatewaySupervisor.sandbox).",
            )
        if len(self.request.body) > self.service.publish_max_bytes:
            return self.fail(
                413,
                "too_large",
                f"the notebook is larger than {self.service.publish_max_bytes} bytes",
            )
        try:
            nb = check_notebook(self.request.body, f"{course}/{name}.ipynb")
        except NotebookError as e:
            return self.fail(
                400,
                "notebook_refused",
                f"the notebook was refused: {len(e.problems)} problem(s)",
                problems=[p.as_dict() for p in e.problems],
            )
        existed = self.service.key(course, name) in self.service.supervisor.gateways
        self.log.info("%s publishes %s/%s (version %s)", user["name"], course, name, nb.version)
        try:
            gateway = await self.service.publish(course, name, nb)
        except GatewayFailed as e:
            return self.fail(422, "setup_failed", str(e), detail=e.detail)
        self.set_status(200 if existed else 201)
        self.finish(self.describe(gateway))

    async def delete(self, course, name):
        user = self._allowed(course, name)
        if not user:
            return
        if not await self.service.withdraw(course, name):
            return self.fail(404, "not_found", f"no API {name!r} in course {course!r}")
        self.log.info("%s withdrew %s/%s", user["name"], course, name)
        self.set_status(204)
        self.finish()


class APIHandler(BaseHandler):
    """Proxy a call to the API's gateway; cache GET answers."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE")

    async def _call(self, course, name, route):
        user = self.require_user()
        if not user:
            return
        service = self.service
        if not self.may_call(user, course):
            return self.fail(
                403, "forbidden", f"{user['name']} may not call the analytics of course {course!r}"
            )
        route = route or "/"
        gateway = service.supervisor.gateways.get(service.key(course, name))
        method = self.request.method
        if route == "/" and method == "GET" and self.wants_html():
            return self._page(course, name)
        if gateway is None:
            state = service.pending.get(service.key(course, name))
            if state and state.get("state") == "starting":
                return self.fail(503, "starting", f"API {name!r} of {course!r} is starting")
            return self.fail(404, "not_found", f"no API {name!r} in course {course!r}")
        nb = gateway.notebook
        if route == "/" and method == "GET" and nb.route_for("GET", "/") is None:
            # the API's own URL (the catalog's ``url``): what it serves, for a program
            self.set_header("Vary", "Accept, Authorization, Cookie")
            return self.finish(service.describe_api(gateway))
        if not any(r.matches(route) is not None for r in nb.routes):
            return self.fail(404, "not_found", f"API {name!r} has no route {route}")
        if nb.route_for(method, route) is None:
            allowed = sorted({r.verb for r in nb.routes if r.matches(route) is not None})
            self.set_header("Allow", ", ".join(allowed))
            return self.fail(405, "method_not_allowed", f"{route} answers {', '.join(allowed)}")

        query = [
            (k, v.decode("utf-8", "replace"))
            for k, vs in self.request.query_arguments.items()
            for v in vs
        ]
        use_cache = method == "GET" and service.cache.max_entries > 0
        watermark = await service.watermark_for(course) if use_cache else None
        if watermark is None:
            use_cache = False

        async def fetch():
            return await self._forward(gateway, user, route, query)

        if use_cache:
            key = cache_key(course, name, route, query, nb.version, watermark)
            entry, hit = await service.cache.get_or_fetch(key, fetch)
        else:
            (entry, _), hit = await fetch(), False
        if entry is None:
            return  # _forward answered with an error
        self._answer(entry, hit)

    get = post = put = delete = _call

    def _page(self, course: str, name: str) -> None:
        apis = [a for a in self.service.course_apis(course) if a["name"] == name]
        if not apis:
            return self.fail(404, "not_found", f"no API {name!r} in course {course!r}")
        title = self.service.catalog[course].title
        self.render_page("course.html", course=course, title=title, apis=apis, one=apis[0])

    def _answer(self, entry: CachedResponse, hit: bool) -> None:
        if entry.status >= 400:
            return self._answer_error(entry)
        self.set_header("X-Cache", "hit" if hit else "miss")
        self.set_header("Cache-Control", "private, no-cache")
        self.set_header("Vary", "Authorization, Cookie")
        if self.request.method == "GET" and entry.status == 200:
            self.set_header("ETag", entry.etag)
            if self.check_etag_header():  # tornado's If-None-Match rules (lists, W/, *)
                self.set_status(304)
                return self.finish()
        self.set_status(entry.status)
        for k, v in entry.headers.items():
            self.set_header(k, v)
        self.finish(entry.body)

    def _answer_error(self, entry: CachedResponse) -> None:
        """A notebook's error in the one shape: its ``error``, ``message`` and other keys
        (``parameter``) kept, this request's ``request_id`` added; a body that is not a
        JSON object becomes the message."""
        try:
            body = json.loads(entry.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = entry.body.decode("utf-8", "replace").strip()[:500]
            body = {"message": text} if text else {}
        body.pop("request_id", None)
        error = str(body.pop("error", None) or f"http_{entry.status}")
        message = str(body.pop("message", None) or error.replace("_", " "))
        extra = {k: v for k, v in body.items() if k != "headers"}  # fail()'s own argument
        self.fail(entry.status, error, message, **extra)

    def compute_etag(self):
        return None  # ours is set explicitly (version + body)

    async def _forward(self, gateway, user, route, query) -> tuple[CachedResponse | None, bool]:
        """Call the gateway; (answer, cacheable), or (None, False) after answering an error."""
        service, sup = self.service, self.service.supervisor
        loop = asyncio.get_running_loop()
        # one deadline for the whole call: no caller waits longer than the two guards + 1 s
        deadline = loop.time() + sup.queue_timeout + sup.execution_timeout + 1.0
        if not gateway.ready.is_set():
            try:
                await asyncio.wait_for(gateway.ready.wait(), sup.queue_timeout)
            except TimeoutError:
                self.fail(
                    503, "restarting", f"the API is restarting ({gateway.message}); try again"
                )
                return None, False
        headers = {
            "Authorization": f"token {gateway.spec.token}",
            # who asked is not the notebook's business: answers depend on the course only,
            # so one cached answer serves every caller the course's scope lets in
            "X-Request-Id": self.request_id,
        }
        for h in ("Content-Type", "Accept", "Accept-Language"):
            if h in self.request.headers:
                headers[h] = self.request.headers[h]
        url = gateway.spec.url + route + ("?" + urlencode(query) if query else "")
        body = self.request.body if self.request.method in ("POST", "PUT") else None
        if body is None and self.request.method in ("POST", "PUT"):
            body = b""
        # the gateway answers 503/504 itself within its guards; this bounds the rest
        timeout = max(0.1, deadline - loop.time())
        req = HTTPRequest(
            url,
            method=self.request.method,
            headers=headers,
            body=body,
            request_timeout=timeout,
            connect_timeout=min(timeout, 5.0),
            allow_nonstandard_methods=True,
            follow_redirects=False,
        )
        try:
            resp = await service.http.fetch(req, raise_error=False)
        except Exception as e:
            self.log.warning(
                "request %s: gateway %s unreachable: %s", self.request_id, gateway.key, e
            )
            self.fail(
                502,
                "gateway_unavailable",
                "the API's gateway did not answer; it is being restarted",
            )
            return None, False
        if resp.code == 599:
            self.log.warning("request %s: gateway %s: %s", self.request_id, gateway.key, resp.error)
            self.fail(504, "gateway_timeout", "the API's gateway did not answer in time")
            return None, False
        ctype = resp.headers.get("Content-Type", "application/json")
        if not safe_media_type(ctype):
            self.log.warning(
                "request %s: %s answered %s: refused", self.request_id, gateway.key, ctype
            )
            self.fail(
                502,
                "unsafe_content_type",
                f"route {route} of API {gateway.spec.api_name!r} answered {ctype.split(';')[0]!r}; "
                "analytics answers must be JSON, CSV or plain text",
            )
            return None, False
        out_headers = {k: v for k, v in resp.headers.get_all() if k.lower() in PASSED_HEADERS}
        entry = CachedResponse(
            resp.code,
            out_headers,
            resp.body or b"",
            make_etag(gateway.notebook.version, resp.body or b""),
        )
        no_store = "no-store" in resp.headers.get("Cache-Control", "").lower()
        return entry, resp.code == 200 and not no_store


def main(argv=None):
    app = AnalyticsService.instance()
    try:
        app.initialize(argv)
    except CatalogError as e:
        raise SystemExit(f"The analytics service cannot read the course catalog:\n{e}") from None
    app.start()
