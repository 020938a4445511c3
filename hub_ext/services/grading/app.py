"""The grading service: learners fetch and hand in assignments, teachers read and grade them.

Run by JupyterHub as a managed service (see :mod:`.hubconfig`)::

    python -m hub_ext.services.grading --CourseCatalog.path=courses.yaml \\
        --GradingService.data_dir=/srv/hub/grading

Routes under the service prefix (``/services/grading/``), JSON unless said otherwise:

=======  ==================================================  ======================================
verb     path                                                who (scope in the caller's token)
=======  ==================================================  ======================================
GET      ``api/``                                            anyone let in: the queue's state
GET      ``api/courses``                                     the courses the caller may use, with role
GET      ``api/courses/<c>/assignments``                     learner: released ones with own state;
                                                             teacher: all
POST     ``api/courses/<c>/assignments/<a>/fetch``           learner: the student version (notebook)
POST     ``api/courses/<c>/assignments/<a>/submissions``     learner: hand in (body: the notebook); 202
GET      ``api/courses/<c>/assignments/<a>/submissions``     learner: own; teacher: everyone's
GET      ``api/courses/<c>/assignments/<a>/fetches``         teacher: who fetched when
POST     ``api/courses/<c>/assignments/<a>/regrade``         teacher: a new run of every latest attempt
GET      ``api/courses/<c>/gradebook`` (``gradebook.csv``)   teacher
GET      ``api/submissions/<id>``                            its learner, the course's teachers
GET      ``api/submissions/<id>/feedback``                   the same: the feedback notebook
GET      ``api/submissions/<id>/notebook``                   the same: the notebook as handed in
POST     ``api/submissions/<id>/manual``                     the course's teachers: manual points
GET      ``submissions/<id>`` (HTML)                         the feedback page
GET      ``courses/<c>/gradebook`` (HTML)                    the gradebook page
=======  ==================================================  ======================================

"learner" is ``custom:grading:submit:<c>`` and "teacher" ``custom:grading:grade:<c>``
(:func:`hub_ext.courses.grading_scope`), checked in the caller's token for every request:
a token of the user that does not carry the course's scope (made for another course, a
server's own token) is refused with 403 naming the scope. Callers are identified by the hub
(OAuth cookie for browsers, ``Authorization: token ...`` for scripts); the service's own
token needs no scopes. Another learner's submission, or one of another course, is 403; an
unknown id 404. Refusals of the policy (:mod:`.policy`) are 403 with their code as
``error``. Request bodies larger than ``max_body_bytes`` are read to the end and refused
with 413 (past tornado's own 100 MB limit the connection is closed).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
)
from sqlalchemy.exc import SQLAlchemyError
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Callable, Integer, Unicode, default

from ...courses import (
    API_NAME_PATTERN,
    Assignment,
    CatalogError,
    Course,
    CourseCatalog,
    grading_scope,
)
from ..base import HubServiceApp
from ..events.store import EventStore
from ..hubauth import HubServiceHandler, NotFoundMixin, PageErrorsMixin
from .autograde import Autograder
from .notebooks import (
    AssignmentError,
    load_source,
    prepare_submission,
    read_notebook,
    student_version,
)
from .policy import Refusal, fetch_refusal, session_end, submission_refusal
from .queue import GradingQueue
from .store import GradingStore

__all__ = ["GradingService", "main"]

ROLES = ("learner", "teacher")
_ID = API_NAME_PATTERN.strip("^$")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: a formula-looking cell of the CSV gradebook is quoted (spreadsheets run formulas)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
TEMPLATES = Path(__file__).parent / "templates"


def _json_default(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value) -> str:
    return json.dumps(value, default=_json_default)


class GradingService(HubServiceApp):
    """Assignments of every course: fetch, submit, autograde in the sandbox, gradebook."""

    name = "hub-ext-grading"
    default_name = "grading"
    description = __doc__.splitlines()[0]
    classes = [CourseCatalog, GradingQueue, Autograder]
    data_dir = Unicode(
        config=True,
        help="""Where the service keeps its database (unless ``db_url`` says otherwise) and
        the gradings' scratch space (``runtime``, unless ``c.Autograder.runtime_dir`` is set).
        Created 0700; its files 0600. Default: ``grading`` in the working directory.
        Example: ``c.GradingService.data_dir = "/srv/jupyterhub/grading"``""",
    )

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath("grading")

    db_url = Unicode(
        config=True,
        help="""SQLAlchemy URL of the grading database (submissions, runs, grades). Default:
        SQLite ``grading.sqlite`` in ``data_dir``. Example:
        ``c.GradingService.db_url = "postgresql+psycopg://grading@db/grading"``""",
    )

    @default("db_url")
    def _default_db_url(self):
        return f"sqlite:///{Path(self.data_dir) / 'grading.sqlite'}"

    events_db = Unicode(
        "",
        config=True,
        help="""SQLAlchemy URL of the event store, where each graded run becomes xAPI
        statements. Default: empty (no statements). Example:
        ``c.GradingService.events_db = "sqlite:////srv/jupyterhub/events.sqlite"``""",
    )
    max_body_bytes = Integer(
        10 * 1024 * 1024,
        config=True,
        help="""Largest request body (a submitted notebook), in bytes; larger is refused
        with 413. Default: 10 MiB. Example: ``c.GradingService.max_body_bytes = 2 * 1024**2``""",
    )
    hub_cache_max_age = Integer(
        60,
        config=True,
        help="""Seconds the service trusts the hub's answer about a token (its owner and
        scopes) before asking again. Default: 60.""",
    )
    now = Callable(
        default_value=lambda: datetime.now(UTC),
        config=True,
        help="""The clock of the release, due and session checks (a callable returning an
        aware datetime). Default: the system's. Tests set it in a config file.""",
    )

    def initialize(self, argv=None):
        super().initialize(argv)
        self.catalog = CourseCatalog.instance(parent=self).catalog
        Path(self.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(self.data_dir).chmod(0o700)
        if "runtime_dir" not in self.config.Autograder:
            self.config.Autograder.runtime_dir = str(Path(self.data_dir) / "runtime")
        self.store = GradingStore(self.db_url)
        self.store.create()
        events = None
        if self.events_db:
            events = EventStore(self.events_db)
            events.create()
        self.queue = GradingQueue(
            parent=self, log=self.log, store=self.store, catalog=self.catalog, events=events,
            now=self.now,
        )  # fmt: skip
        self._sources: dict[Path, tuple[int, object]] = {}
        self.hub_auth = self.make_hub_auth(
            (grading_scope(cid, role) for cid in self.catalog for role in ROLES),
            self.hub_cache_max_age,
        )
        self.web_app = self.make_app()

    def make_app(self) -> web.Application:
        p = self.base_url.rstrip("/")
        course, a, sid = f"({_ID})", f"({_ID})", f"({_UUID})"
        handlers = [
            (p + r"/?", IndexPage),
            (p + r"/oauth_callback", HubOAuthCallbackHandler),
            (p + r"/api/?", StatusHandler),
            (p + r"/api/courses", CoursesHandler),
            (p + rf"/api/courses/{course}/assignments", AssignmentsHandler),
            (p + rf"/api/courses/{course}/assignments/{a}/fetch", FetchHandler),
            (p + rf"/api/courses/{course}/assignments/{a}/fetches", FetchesHandler),
            (p + rf"/api/courses/{course}/assignments/{a}/submissions", SubmissionsHandler),
            (p + rf"/api/courses/{course}/assignments/{a}/regrade", RegradeHandler),
            (p + rf"/api/courses/{course}/gradebook(\.csv)?", GradebookHandler),
            (p + rf"/api/submissions/{sid}", SubmissionHandler),
            (p + rf"/api/submissions/{sid}/(feedback|notebook)", SubmissionFileHandler),
            (p + rf"/api/submissions/{sid}/manual", ManualHandler),
            (p + rf"/submissions/{sid}", FeedbackPage),
            (p + rf"/courses/{course}/gradebook", GradebookPage),
            (p + r"/.*", NotFoundHandler),
        ]
        return self.web_application(handlers, self.hub_auth, template_path=str(TEMPLATES))

    # ------------------------------------------------------------------ assignments

    def source(self, assignment: Assignment):
        """The assignment's checked source (read again when its file changes: a regrade
        and a fetch see the teacher's latest version). Raises AssignmentError or OSError."""
        path = assignment.notebook
        mtime = path.stat().st_mtime_ns
        cached = self._sources.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_source(path))
            self._sources[path] = cached
        return cached[1]

    async def serve(self) -> None:
        server = HTTPServer(self.web_app, xheaders=True)
        server.listen(self.port, self.ip)
        self.log.info("Grading service at http://%s:%d%s", self.ip, self.port, self.base_url)
        await self.queue.start()
        await self.until_stopped()
        self.log.info("Stopping: runs being graded are graded again at the next start")
        server.stop()
        await self.queue.stop()
        self.store.dispose()

    def start(self):
        asyncio.run(self.serve())


# ------------------------------------------------------------------------ views


def _late(s: dict) -> dict:
    return {"days": s["late_days"], "penalty": s["penalty"]}


def run_view(run: dict | None) -> dict | None:
    if run is None:
        return None
    result = run.get("result") or {}
    return {
        "run": run["run"],
        "reason": run["reason"],
        "state": run["state"],
        "queued_at": run["queued_at"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "status": run["status"],
        "message": result.get("message"),
        "score": run["score"],
        "max_score": run["max_score"],
        "final_score": run["final_score"],
    }


def submission_view(s: dict, base: str) -> dict:
    """A submission as the API shows it (no notebook), with its latest run and result."""
    return {
        "id": s["id"],
        "course": s["course_id"],
        "assignment": s["assignment_id"],
        "learner": s["learner"],
        "attempt": s["attempt"],
        "submitted_at": s["submitted_at"],
        "sha256": s["sha256"],
        "size": s["size"],
        "late": _late(s),
        "latest_run": run_view(s.get("latest")),
        "result": run_view(s.get("graded")),
        "links": {
            "self": f"{base}api/submissions/{s['id']}",
            "feedback": f"{base}api/submissions/{s['id']}/feedback",
            "page": f"{base}submissions/{s['id']}",
        },
    }


def _with_runs(s: dict) -> dict:
    """``latest`` and ``graded`` from a detailed submission's ``runs``."""
    done = [r for r in s["runs"] if r["state"] == "done"]
    return {
        **s,
        "latest": s["runs"][-1] if s["runs"] else None,
        "graded": done[-1] if done else None,
    }


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _csv_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


# ------------------------------------------------------------------------ handlers


class BaseHandler(HubServiceHandler):
    """Identify the caller through the hub; check course scopes; JSON answers and errors."""

    other_scopes = "a course's grading scope"
    json_default = staticmethod(_json_default)

    @property
    def service(self) -> GradingService:
        return self.settings["service"]

    @property
    def base(self) -> str:
        return self.service.base_url

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )

    def holds(self, user: dict, course_id: str, role: str) -> bool:
        return bool(self.hub_auth.check_scopes({grading_scope(course_id, role)}, user))

    def course(self, course_id: str) -> Course | None:
        course = self.service.catalog.get(course_id)
        if course is None:
            self.fail(404, "not_found", f"There is no course {course_id!r}.")
        return course

    def entry(self, course_id: str, *roles: str, assignment_id: str | None = None):
        """(caller, course, their role: "teacher" before "learner"), and the assignment
        if ``assignment_id`` is given, when the caller holds the scope of one of ``roles``
        in the course; else None after answering (404 for an unknown course or assignment)."""
        user = self.require_user()
        if user is None or (course := self.course(course_id)) is None:
            return None
        for role in sorted(roles, key=lambda r: r != "teacher"):
            if self.holds(user, course.id, role):
                if assignment_id is None:
                    return user, course, role
                a = course.assignment(assignment_id)
                if a is None:
                    self.fail(404, "not_found", f"{course.id} has no assignment {assignment_id!r}.")
                    return None
                return user, course, role, a
        needed = " or ".join(grading_scope(course.id, r) for r in roles)
        self.fail(
            403,
            "forbidden",
            f"{user['name']} may not do this in {course.id}: it needs {needed} in the token",
        )
        return None

    async def submission_for(self, submission_id: str) -> tuple[dict, dict, str] | None:
        """(caller, submission with runs, role) if the caller may read it; else None after
        answering: 404 unknown, 403 another learner's or another course's."""
        user = self.require_user()
        if user is None:
            return None
        s = await asyncio.to_thread(self.service.store.submission, submission_id)
        if s is None:
            self.fail(404, "not_found", f"There is no submission {submission_id}.")
            return None
        if self.holds(user, s["course_id"], "teacher"):
            return user, s, "teacher"
        if s["learner"] == user["name"] and self.holds(user, s["course_id"], "learner"):
            return user, s, "learner"
        self.fail(403, "forbidden", f"{user['name']} may not read submission {submission_id}.")
        return None

    async def source_or_fail(self, assignment: Assignment):
        """The assignment's source (read off the loop), or None after a 503."""
        try:
            return await asyncio.to_thread(self.service.source, assignment)
        except (OSError, AssignmentError) as e:
            self.service.log.error("The source of %s cannot be read: %s", assignment.id, e)
            self.fail(
                503,
                "assignment_unavailable",
                f"the notebook of {assignment.title} cannot be read now; its teachers are told",
            )
            return None


@web.stream_request_body
class BodyHandler(BaseHandler):
    """A handler whose body is read in chunks and kept only up to ``max_body_bytes``."""

    async def prepare(self):
        self._chunks: list[bytes] = []
        self._size = 0
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.service.max_body_bytes:
            self._chunks.append(chunk)

    def body(self) -> bytes | None:
        """The whole body, or None after a 413."""
        limit = self.service.max_body_bytes
        if self._size > limit:
            self.fail(
                413,
                "too_large",
                f"the request body is {self._size} bytes; at most {limit} are accepted",
            )
            return None
        return b"".join(self._chunks)

    def json_body(self) -> dict | None:
        body = self.body()
        if body is None:
            return None
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            self.fail(400, "bad_json", f"the body is not JSON: {e}")
            return None
        if not isinstance(value, dict):
            self.fail(400, "bad_json", "the body must be a JSON object")
            return None
        return value


class NotFoundHandler(NotFoundMixin, BaseHandler):
    pass


class StatusHandler(BaseHandler):
    async def get(self):
        if self.require_user() is None:
            return
        queue = self.service.queue
        counts = await asyncio.to_thread(self.service.store.counts)
        self.answer({"workers": queue.workers, "runs": counts, "problem": queue.problem or None})


class CoursesHandler(BaseHandler):
    """The courses the caller may use here, with their roles (JSON)."""

    def courses(self, user: dict) -> list[dict]:
        found = []
        for course in self.service.catalog.values():
            roles = [r for r in ROLES if self.holds(user, course.id, r)]
            if roles:
                found.append({"id": course.id, "title": course.title, "roles": roles})
        return found

    async def get(self):
        user = self.require_user()
        if user is None:
            return
        self.answer({"user": user["name"], "courses": self.courses(user)})


class PageErrors(PageErrorsMixin):
    """The grading pages' refusals and errors, as pages for a browser."""

    titles = {
        401: "Please log in",
        403: "Not yours to see",
        404: "Nothing here",
        503: "Not ready yet",
    }


class IndexPage(PageErrors, CoursesHandler):
    """The service's front page: the caller's courses, with the gradebook for teachers."""

    async def get(self):
        user = self.require_user()
        if user is None:
            return
        self.render("index.html", user=user["name"], courses=self.courses(user), base=self.base)


class AssignmentsHandler(BaseHandler):
    """The course's assignments: released ones with the learner's own state; teachers all."""

    async def get(self, course_id):
        found = self.entry(course_id, "learner", "teacher")
        if found is None:
            return
        user, course, role = found
        service = self.service
        now = service.now()
        store = service.store
        mine = {}
        fetched = {}
        if self.holds(user, course.id, "learner"):
            for s in await asyncio.to_thread(store.submissions, course.id, None, user["name"]):
                mine.setdefault(s["assignment_id"], []).append(s)
            for f in await asyncio.to_thread(store.fetches, course.id, None, user["name"]):
                fetched[f["assignment_id"]] = f
        items = []
        for a in course.assignments:
            released = now >= a.release_at
            if role != "teacher" and not released:
                continue
            item = {
                "id": a.id,
                "title": a.title,
                "released": released,
                "release_at": a.release_at,
                "due_at": a.due_at,
                "late": {"penalty_per_day": a.late.penalty_per_day, "until": a.late.until}
                if a.late
                else None,
                "attempts": a.attempts,
                "timed_seconds": a.timed,
            }
            if self.holds(user, course.id, "learner"):
                item["mine"] = self._state(a, now, mine.get(a.id, []), fetched.get(a.id))
            items.append(item)
        self.answer({"course": course.id, "assignments": items})

    def _state(self, a: Assignment, now: datetime, subs: list[dict], fetch: dict | None) -> dict:
        first = fetch["first_fetched_at"] if fetch else None
        decision = submission_refusal(a, now, attempts_used=len(subs), first_fetch_at=first)
        return {
            "fetched": fetch is not None,
            "first_fetched_at": first,
            "session_ends_at": session_end(a, first),
            "attempts_used": len(subs),
            "attempts_left": None if a.attempts is None else max(0, a.attempts - len(subs)),
            "may_submit": decision.accepted,
            "refusal": None
            if decision.accepted
            else {"error": decision.code, "message": decision.message},
            "latest": submission_view(subs[-1], self.base) if subs else None,
        }


class FetchHandler(BodyHandler):
    """The student version; the first fetch starts a timed session."""

    async def post(self, course_id, assignment_id):
        found = self.entry(course_id, "learner", assignment_id=assignment_id)
        if found is None:
            return
        user, course, _, a = found
        now = self.service.now()
        refusal = fetch_refusal(a, now)
        if refusal is not None:
            return self.fail(403, refusal.code, refusal.message)
        source = await self.source_or_fail(a)
        if source is None:
            return
        nb = student_version(source)
        row = await asyncio.to_thread(
            self.service.store.record_fetch, course.id, a.id, user["name"], now
        )
        self.service.log.info("%s fetched %s/%s", user["name"], course.id, a.id)
        ends = session_end(a, row["first_fetched_at"])
        self.set_header("X-Grading-First-Fetch", _json_default(row["first_fetched_at"]))
        if ends is not None:
            self.set_header("X-Grading-Session-Ends", _json_default(ends))
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("Content-Disposition", f'attachment; filename="{a.id}.ipynb"')
        self.finish(nbformat.writes(nb))


class FetchesHandler(BaseHandler):
    async def get(self, course_id, assignment_id):
        found = self.entry(course_id, "teacher", assignment_id=assignment_id)
        if found is None:
            return
        a = found[3]
        rows = await asyncio.to_thread(self.service.store.fetches, course_id, a.id)
        fetches = [
            {
                "learner": r["learner"],
                "first_fetched_at": r["first_fetched_at"],
                "last_fetched_at": r["last_fetched_at"],
                "count": r["count"],
                "session_ends_at": session_end(a, r["first_fetched_at"]),
            }
            for r in rows
        ]
        self.answer({"course": course_id, "assignment": a.id, "fetches": fetches})


class SubmissionsHandler(BodyHandler):
    async def get(self, course_id, assignment_id):
        found = self.entry(course_id, "learner", "teacher", assignment_id=assignment_id)
        if found is None:
            return
        user, course, role, a = found
        learner = None if role == "teacher" else user["name"]
        if role == "teacher" and self.get_argument("learner", None):
            learner = self.get_argument("learner")
        rows = await asyncio.to_thread(self.service.store.submissions, course.id, a.id, learner)
        self.answer({"submissions": [submission_view(s, self.base) for s in rows]})

    async def post(self, course_id, assignment_id):
        found = self.entry(course_id, "learner", assignment_id=assignment_id)
        if found is None:
            return
        user, course, _, a = found
        body = self.body()
        if body is None:
            return
        source = await self.source_or_fail(a)
        if source is None:
            return
        try:
            # read, checked against the schema and put in the source's frame now, so what
            # is kept can be graded (never a 500 and never a job that cannot run)
            nb = read_notebook("the submission", body)
            nbformat.validate(nb)
            prepare_submission(source, nb)
        except AssignmentError as e:
            return self.fail(400, "not_a_notebook", str(e))
        except Exception as e:  # nbformat's ValidationError and what a malformed cell raises
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            return self.fail(
                400, "not_a_notebook", f"the submission is not a valid notebook: {message}"
            )
        now = self.service.now()

        def decide(used, first):
            return submission_refusal(a, now, attempts_used=used, first_fetch_at=first)

        outcome = await asyncio.to_thread(
            self.service.store.submit, course.id, a.id, user["name"], body, now, decide
        )
        if isinstance(outcome, Refusal):
            self.service.log.info(
                "%s's submission of %s/%s refused: %s", user["name"], course.id, a.id, outcome.code
            )
            return self.fail(403, outcome.code, outcome.message)
        self.service.queue.notify()
        self.service.log.info(
            "%s submitted %s/%s attempt %d (%d bytes, sha256 %s)",
            user["name"], course.id, a.id, outcome["attempt"], outcome["size"], outcome["sha256"][:12],
        )  # fmt: skip
        self.answer({**submission_view(outcome, self.base), "state": "queued"}, status=202)


class SubmissionHandler(BaseHandler):
    async def get(self, submission_id):
        found = await self.submission_for(submission_id)
        if found is None:
            return
        _, s, _ = found
        view = submission_view(_with_runs(s), self.base)
        view["runs"] = [{**run_view(r), "result": r["result"]} for r in s["runs"]]
        view["manual"] = s["manual"]
        self.answer(view)


class SubmissionFileHandler(BaseHandler):
    """The feedback notebook (hidden tests out) or the notebook as handed in."""

    async def get(self, submission_id, which):
        found = await self.submission_for(submission_id)
        if found is None:
            return
        store = self.service.store
        if which == "notebook":
            body = await asyncio.to_thread(store.notebook, submission_id)
        else:
            got = await asyncio.to_thread(store.feedback, submission_id)
            if got is None:
                return self.fail(
                    404,
                    "not_graded",
                    f"submission {submission_id} has no feedback yet: it is not graded",
                )
            body = got[1]
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.finish(body)


class ManualHandler(BodyHandler):
    """``{"grades": {"<grade_id>": {"points": 1.5, "comment": "..."}}}``: a teacher's points for
    the manually graded cells, each between 0 and the cell's points."""

    async def post(self, submission_id):
        found = await self.submission_for(submission_id)
        if found is None:
            return
        user, s, role = found
        if role != "teacher":
            scope = grading_scope(s["course_id"], "teacher")
            return self.fail(403, "forbidden", f"grading by hand needs {scope} in the token")
        body = self.json_body()
        if body is None:
            return
        course = self.service.catalog.get(s["course_id"])
        a = course.assignment(s["assignment_id"]) if course else None
        if a is None:
            return self.fail(404, "not_found", "the assignment is no longer in the catalog")
        source = await self.source_or_fail(a)
        if source is None:
            return
        grades, problems = {}, []
        given = body.get("grades")
        if not isinstance(given, dict) or not given:
            return self.fail(
                400,
                "bad_grades",
                'give {"grades": {"<grade_id>": {"points": N, "comment": "..."}}}',
            )
        for gid, grade in given.items():
            cell = source.cells.get(gid)
            if cell is None or cell.kind not in ("manual", "task"):
                problems.append(f"{gid!r} is not a manually graded cell of {a.id}")
                continue
            points = _number(grade.get("points")) if isinstance(grade, dict) else None
            comment = grade.get("comment", "") if isinstance(grade, dict) else None
            if points is None or not 0 <= points <= cell.points:
                problems.append(f"{gid!r}: points must be a number from 0 to {cell.points:g}")
            elif not isinstance(comment, str) or len(comment) > 10_000:
                problems.append(f"{gid!r}: the comment must be text of at most 10000 characters")
            else:
                grades[gid] = (points, comment)
        if problems:
            return self.fail(400, "bad_grades", "; ".join(problems), problems=problems)
        now = self.service.now()
        await asyncio.to_thread(
            self.service.store.add_manual, submission_id, grades, user["name"], now
        )
        self.service.log.info(
            "%s graded %s by hand (%s)", user["name"], submission_id, ", ".join(grades)
        )
        try:  # the new score reaches the event store now (else at the next grading or start)
            await self.service.queue.publish_pending()
        except SQLAlchemyError as e:
            self.service.log.error(
                "The manual grade of %s waits for the event store: %s", submission_id, e
            )
        s = await asyncio.to_thread(self.service.store.submission, submission_id)
        self.answer({**submission_view(_with_runs(s), self.base), "manual": s["manual"]})


class RegradeHandler(BodyHandler):
    async def post(self, course_id, assignment_id):
        found = self.entry(course_id, "teacher", assignment_id=assignment_id)
        if found is None:
            return
        user, course, _, a = found
        source = await self.source_or_fail(a)
        if source is None:
            return
        queued = await asyncio.to_thread(
            self.service.store.regrade, course.id, a.id, self.service.now()
        )
        self.service.queue.notify()
        self.service.log.info(
            "%s regrades %s/%s: %d run(s) queued", user["name"], course.id, a.id, len(queued)
        )
        self.answer(
            {
                "course": course.id,
                "assignment": a.id,
                "source_version": source.version,
                "queued": queued,
            },
            202,
        )


def gradebook(store: GradingStore, course: Course) -> dict:
    """Learners x assignments: each learner's latest submission and its latest final score."""
    subs = store.submissions(course.id)
    learners = set(course.learners) | {s["learner"] for s in subs}
    learners |= {f["learner"] for f in store.fetches(course.id)}
    latest: dict[tuple[str, str], dict] = {}
    for s in subs:  # oldest first: the last one seen is the latest
        latest[(s["learner"], s["assignment_id"])] = s
    rows = []
    for learner in sorted(learners):
        cells = {}
        for a in course.assignments:
            s = latest.get((learner, a.id))
            graded = s["graded"] if s else None
            cells[a.id] = None if s is None else {
                "submission": s["id"],
                "attempt": s["attempt"],
                "state": s["latest"]["state"] if s["latest"] else None,
                "final_score": graded["final_score"] if graded else None,
                "max_score": graded["max_score"] if graded else None,
                "late_days": s["late_days"],
                "needs_manual": bool(graded and any(
                    t["status"] == "needs_manual" for t in (graded["result"] or {}).get("tests", [])
                )),
            }  # fmt: skip
        rows.append({"learner": learner, "assignments": cells})
    return {
        "course": course.id,
        "assignments": [
            {"id": a.id, "title": a.title, "due_at": a.due_at} for a in course.assignments
        ],
        "learners": rows,
    }


class GradebookHandler(BaseHandler):
    async def get(self, course_id, csv_suffix):
        found = self.entry(course_id, "teacher")
        if found is None:
            return
        book = await asyncio.to_thread(gradebook, self.service.store, found[1])
        if not csv_suffix:
            return self.answer(book)
        out = io.StringIO()
        writer = csv.writer(out)
        ids = [a["id"] for a in book["assignments"]]
        writer.writerow(["learner", *ids])
        for row in book["learners"]:
            cells = [row["assignments"][i] for i in ids]
            writer.writerow(
                [
                    _csv_cell(row["learner"]),
                    *("" if c is None else _csv_cell(c["final_score"]) for c in cells),
                ]
            )
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{course_id}-gradebook.csv"')
        self.finish(out.getvalue())


class FeedbackPage(PageErrors, BaseHandler):
    async def get(self, submission_id):
        found = await self.submission_for(submission_id)
        if found is None:
            return
        _, s, role = found
        s = _with_runs(s)
        course = self.service.catalog.get(s["course_id"])
        a = course.assignment(s["assignment_id"]) if course else None
        graded = s["graded"]
        self.render(
            "feedback.html",
            s=s,
            title=a.title if a else s["assignment_id"],
            course=course,
            graded=graded,
            result=(graded or {}).get("result") or {},
            manual=s["manual"],
            role=role,
            base=self.base,
        )


class GradebookPage(PageErrors, BaseHandler):
    async def get(self, course_id):
        found = self.entry(course_id, "teacher")
        if found is None:
            return
        book = await asyncio.to_thread(gradebook, self.service.store, found[1])
        self.render("gradebook.html", book=book, course=found[1], base=self.base)


def main(argv=None):
    app = GradingService.instance()
    try:
        app.initialize(argv)
    except CatalogError as e:
        raise SystemExit(f"The grading service cannot read the course catalog:\n{e}") from None
    app.start()
