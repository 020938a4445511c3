"""What the analytics notebooks ask the event store (read-only), as plain functions.

Every function takes an engine and a course id and returns JSON-ready data. ``course``
``"*"`` means every course in the store (an institution-wide view; the analytics service
sets ``COURSE_ID`` to one course for a course's notebooks). Parameters coming from a
request are checked by the ``param_*`` helpers, which raise :class:`BadParameter` (the
notebooks answer it with status 400 and the hub services' one error shape,
``{"error": "bad_parameter", "message": ..., "parameter": ...}``). Parsing is strict: a
whole number is ASCII digits with an optional minus sign (no spaces, no ``_``), a date is
``YYYY-MM-DD`` exactly.

Definitions every figure shares:

- **clicks** are VLE clicks only: the click counts of ``viewed`` statements (OULAD's
  ``sum_click``; one per FutureLearn step visit). Assessment submissions are
  **submissions**, counted apart; ``events`` counts every statement.
- a **submission** is a learner's hand-in of one of the course's assessments: one per
  learner and assessment, the latest ``completed`` statement about it (a hand-in again
  replaces the one before, as nbgrader grades the latest), handed in at its timestamp.
  Its **score** is the latest ``scored`` statement's about that assessment and learner
  (the hub's grading publishes one per grading and per manual grade), else the
  ``completed`` statement's own (OULAD's). No other statement about an assessment is a
  submission (:func:`_submissions`).
- **staff are not learners**: enrolments whose ``role`` is in :data:`STAFF_ROLES`
  (FutureLearn's ``organisation_admin``) and the course's team members (FutureLearn's
  team-members export, ``team_members``) are left out of every figure, whichever export
  named them and in whichever order they were imported (the rule is applied when a figure
  is asked for, :func:`_staff`). FutureLearn's own aggregates (video-stats) and its
  anonymous weekly sentiment survey cannot tell staff apart: their figures say so.
- Weeks are counted from the course's start (``courses.starts_at``, which the catalog's
  ``opens`` or the importer's ``--start`` sets; when unknown, the day of the first learner
  event; ``None`` when there is none): week 0 is the first seven days, days before the start
  fall in negative weeks.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import sys
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, and_, case, distinct, func, insert, literal, null, select

from .models import (
    Assessment,
    Course,
    Enrolment,
    Resource,
    Statement,
    SurveyResponse,
    TeamMember,
    VideoStats,
    funnel_sums,
    learner_days,
    resource_sums,
    resource_sums_basis,
    resource_sums_pending,
    sums_made,
    weekly_sums,
)
from .store import make_engine

__all__ = [
    "BadParameter",
    "DEFAULT_SESSION_GAP_MINUTES",
    "STAFF_ROLES",
    "assessment_scores",
    "connect",
    "daily_activity",
    "funnel",
    "heatmap",
    "leavers",
    "learner_profile",
    "not_opened",
    "param_choice",
    "param_date",
    "param_int",
    "param_str",
    "QUIZ_RULE",
    "quiz_answers",
    "resource_weeks",
    "respond",
    "response_info",
    "segments",
    "sentiment_weekly",
    "sessions",
    "summary",
    "time_on_step",
    "TIME_ON_STEP_RULE",
    "video_completion",
    "weekly_engagement",
]

DEFAULT_SESSION_GAP_MINUTES = 55
#: a course's ``attributes["timestamps"]`` when its events are dated to the day only (OULAD:
#: a click row is a learner's clicks on a site in one day): no time on step can be measured
DAY_TIMESTAMPS = "day"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
VIEWED = "http://id.tincanapi.com/verb/viewed"
ANSWERED = "http://adlnet.gov/expapi/verbs/answered"
SCORED = "http://adlnet.gov/expapi/verbs/scored"
#: enrolment roles of a course's team (FutureLearn's enrolments export): not learners
STAFF_ROLES = ("organisation_admin",)
#: OU pass mark: a mean assessment score below it counts as struggling
PASS_MARK = 40.0
_EPOCH = date(1970, 1, 1)
S = Statement.__table__
E = Enrolment.__table__
R = Resource.__table__
A = Assessment.__table__
C = Course.__table__
T = TeamMember.__table__
V = VideoStats.__table__
Q = SurveyResponse.__table__
L = learner_days
RS, RB, RP = resource_sums, resource_sums_basis, resource_sums_pending
WS, FS, SM = weekly_sums, funnel_sums, sums_made


class BadParameter(ValueError):
    """A request parameter that is missing or malformed (the route answers 400)."""

    def __init__(self, parameter: str, message: str):
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")

    def as_json(self) -> dict:
        return _error("bad_parameter", str(self), parameter=self.parameter)


def _error(code: str, message: str, **extra) -> dict:
    """The hub services' one error shape: a machine code, a sentence, then details."""
    return {"error": code, "message": message, **extra}


# --------------------------------------------------------------------------- plumbing


def connect(url: str | None = None) -> Engine:
    """The store, read-only, from ``url`` or ``$HUB_EXT_EVENTS_URL``."""
    url = url or os.environ.get("HUB_EXT_EVENTS_URL")
    if not url:
        raise RuntimeError("HUB_EXT_EVENTS_URL is not set: the analytics service gives it")
    return make_engine(url)


def course_from_env() -> str:
    course = os.environ.get("COURSE_ID", "")
    if not course:
        raise RuntimeError("COURSE_ID is not set: the analytics service gives it")
    return course


def respond(request: str | dict | None, answer, *, allowed: Iterable[str] = ()) -> tuple[int, str]:
    """Answer a route: (status, JSON text).

    ``request`` is kernel gateway's ``REQUEST`` (JSON text or dict); query parameters not
    in ``allowed`` are refused. ``answer(request_dict)`` parses its parameters with the
    ``param_*`` helpers and returns the result: 200 with it, 400 with
    ``{"error": "bad_parameter", "message", "parameter"}`` for a :class:`BadParameter`, 404
    (``not_found``) when it returns None, 500 (``internal``) with a generic message (the
    traceback goes to the kernel's stderr, not the caller).
    """
    try:
        req = json.loads(request) if isinstance(request, str) else (request or {})
        if not isinstance(req, dict):
            raise BadParameter("request", "is not a JSON object")
        unknown = sorted(set(req.get("args") or {}) - set(allowed))
        if unknown:
            hint = (
                f" (this route takes: {', '.join(allowed)})"
                if allowed
                else " (this route takes none)"
            )
            raise BadParameter(unknown[0], f"unknown parameter{hint}")
        result = answer(req)
    except BadParameter as e:
        return 400, json.dumps(e.as_json())
    except Exception:  # a notebook must answer JSON, never a traceback
        traceback.print_exc(file=sys.stderr)
        return 500, json.dumps(_error("internal", "internal error; see the analytics service log"))
    if result is None:
        return 404, json.dumps(_error("not_found", "not found"))
    return 200, json.dumps(result, default=_json_default)


def response_info(status: int) -> str:
    """What a ``# ResponseInfo`` cell prints: the status and a JSON content type."""
    return json.dumps({"status": status, "headers": {"Content-Type": "application/json"}})


def _json_default(value):
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _arg(request: dict | None, name: str) -> str | None:
    """A parameter from a kernel gateway REQUEST: the path first, then the query string."""
    if not request:
        return None
    path = request.get("path") or {}
    if name in path:
        return path[name]
    values = (request.get("args") or {}).get(name)
    if values:
        return values[0] if isinstance(values, list) else values
    return None


def param_str(
    request, name: str, *, required: bool = False, max_length: int = 512, pattern: str | None = None
):
    value = _arg(request, name)
    if value is None or value == "":
        if required:
            raise BadParameter(name, "is required")
        return None
    if len(value) > max_length:
        raise BadParameter(name, f"is longer than {max_length} characters")
    if pattern and not re.fullmatch(pattern, value):
        raise BadParameter(name, f"{value!r} is not valid (expected {pattern})")
    return value


def param_int(
    request,
    name: str,
    *,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
):
    value = _arg(request, name)
    if value is None or value == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,18}", value):  # int() also takes " 5", "10_0", "٥"
        raise BadParameter(name, f"{value!r} is not a whole number")
    number = int(value)
    if minimum is not None and number < minimum:
        raise BadParameter(name, f"{number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise BadParameter(name, f"{number} is above the maximum {maximum}")
    return number


def param_date(request, name: str) -> date | None:
    value = _arg(request, name)
    if value is None or value == "":
        return None
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):  # fromisoformat: 20131001
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a date (YYYY-MM-DD)") from None


def param_choice(request, name: str, choices: Iterable[str], default: str):
    value = _arg(request, name) or default
    choices = tuple(choices)
    if value not in choices:
        raise BadParameter(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _live_statements(
    course: str,
    since: date | None = None,
    until: date | None = None,
    *,
    staff: list[str] = (),
    table=S,
) -> list:
    """The WHERE clauses of the course's learners' statements that are not voided (none of
    ``staff``'s), from the day ``since`` to the day ``until`` (both included, either open);
    :class:`BadParameter` if ``since`` is after ``until``. On ``table`` ``learner_days``
    (:class:`_DayLevel`), which sums the live statements only: the same rows, summed."""
    if since and until and since > until:
        raise BadParameter("since", f"{since} is after until ({until})")
    where = [_course_filter(table.c.course_id, course)]
    if table is S:
        where.append(S.c.voided.is_(False))
    if staff:
        where.append(table.c.learner.not_in(staff))
    if since:
        where.append(table.c.day >= _day(since))
    if until:
        where.append(table.c.day <= _day(until))
    return where


def _extract_has(conn, table) -> bool:
    """Whether the database is a course extract with ``table`` (one of the sums only an
    extract keeps: :data:`~.models.EXTRACT_METADATA`)."""
    return conn.dialect.name == "sqlite" and bool(
        conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
        ).first()
    )


class _DayLevel:
    """Where the day-level figures (summary, daily and weekly activity, the funnel, segments)
    add up from: a course extract's ``learner_days`` (its statements summed per course,
    learner and day as the extract is brought up to date), else the statements themselves
    (a store, or an extract made before it kept the sums). The same figures either way:
    ``learner_days`` holds the live statements only, with the same course, learner and day.
    """

    def __init__(self, conn):
        self.summed = _extract_has(conn, L)
        t = self.table = L if self.summed else S
        self.day, self.learner = t.c.day, t.c.learner
        if self.summed:
            self.events = func.coalesce(func.sum(L.c.events), 0)
            self.clicks = func.coalesce(func.sum(L.c.clicks), 0)
            self.first, self.last = func.min(L.c.first_ts), func.max(L.c.last_ts)
        else:
            self.events, self.clicks = func.count(), _clicks()
            self.first, self.last = func.min(S.c.timestamp), func.max(S.c.timestamp)

    def live(self, course: str, since=None, until=None, *, staff: list[str] = ()) -> list:
        """:func:`_live_statements`' WHERE clauses, on this table."""
        return _live_statements(course, since, until, staff=staff, table=self.table)


def _staff(conn, course: str) -> list[str]:
    """The course's team (not learners): enrolled with a role in :data:`STAFF_ROLES`, or
    named by the team-members export; the one rule every figure applies."""
    enrolled = select(E.c.learner).where(
        _course_filter(E.c.course_id, course),
        E.c.attributes["role"].as_string().in_(STAFF_ROLES),
    )
    team = select(T.c.learner).where(_course_filter(T.c.course_id, course))
    return sorted(conn.execute(enrolled.union(team)).scalars())


def _enrolments(course: str, staff: list[str]) -> list:
    """The WHERE clauses of the course's enrolments of learners (not ``staff``)."""
    where = [_course_filter(E.c.course_id, course)]
    if staff:
        where.append(E.c.learner.not_in(staff))
    return where


def _clicks():
    """The sum of VLE clicks: the click counts of ``viewed`` statements (not submissions)."""
    return func.coalesce(func.sum(case((S.c.verb == VIEWED, S.c.clicks), else_=0)), 0)


def _is_submission(course: str):
    """A hand-in statement (``completed``) about one of the course's assessments."""
    return and_(
        S.c.verb == COMPLETED,
        S.c.object_id.in_(select(A.c.assessment_id).where(_course_filter(A.c.course_id, course))),
    )


def _submissions(conn, *where) -> dict[tuple[str, str], tuple[datetime, float | None]]:
    """(assessment, learner) -> (handed in at, score) of the submissions among the
    statements ``where`` selects (the module's definition: the latest ``completed``, scored
    by the latest ``scored`` else by itself). Ties in time go by the order stored."""
    handed_in: dict[tuple[str, str], tuple[datetime, float | None]] = {}
    scored: dict[tuple[str, str], float | None] = {}
    for object_id, learner, verb, ts, score in conn.execute(
        select(S.c.object_id, S.c.learner, S.c.verb, S.c.timestamp, S.c.score)
        .where(*where, S.c.verb.in_((COMPLETED, SCORED)))
        .order_by(S.c.timestamp, S.c.pk)
    ):
        if verb == COMPLETED:
            handed_in[(object_id, learner)] = (ts, score)
        else:
            scored[(object_id, learner)] = score
    return {
        key: (ts, scored[key] if key in scored else score) for key, (ts, score) in handed_in.items()
    }


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def _course_filter(column, course: str):
    return literal(True) if course == "*" else column == course


def _start_day(conn, course: str, staff: list[str] = ()) -> int | None:
    """The course's first day (UTC day number): its ``starts_at``, else the day of its
    first learner event (not staff's: their previews come before the course), else None."""
    if course == "*":
        start = conn.execute(select(func.min(C.c.starts_at))).scalar()
    else:
        start = conn.execute(select(C.c.starts_at).where(C.c.id == course)).scalar()
    if start is not None:
        return _day(start.date())
    d = _DayLevel(conn)
    return conn.execute(select(func.min(d.day)).where(*d.live(course, staff=staff))).scalar()


def _week(day: int, start: int) -> int:
    return (day - start) // 7


def _week_sql(day, start: int):
    """:func:`_week` in SQL. Integer division truncates towards zero there: shifted so that
    days before the start fall in negative weeks, as _week's floor division puts them."""
    shift = 7 * 100_000
    return ((day - start + shift) // 7 - shift // 7).label("week")


def _group_learners(
    conn, course: str, group: str | None, staff: list[str] = ()
) -> list[str] | None:
    """Learners of the course whose enrolment matches ``group`` (``key:value``)."""
    if group is None:
        return None
    if ":" not in group:
        raise BadParameter(
            "group", f"{group!r} is not key:value, e.g. final_result:Fail or region:Scotland"
        )
    key, value = group.split(":", 1)
    rows = conn.execute(
        select(E.c.learner, E.c.final_result, E.c.attributes).where(*_enrolments(course, staff))
    )
    out = []
    for learner, final_result, attributes in rows:
        have = final_result if key == "final_result" else (attributes or {}).get(key)
        if have is not None and str(have) == value:
            out.append(learner)
    return out


# --------------------------------------------------------------------------- summary


def summary(engine: Engine, course: str) -> dict:
    """Registrations, final results, and event totals of a course's learners (not staff):
    ``events`` every statement, ``clicks`` VLE clicks only, ``submissions`` apart."""
    with engine.connect() as conn:
        staff = _staff(conn, course)
        enrolled = conn.execute(
            select(func.count()).select_from(E).where(*_enrolments(course, staff))
        ).scalar()
        results = dict(
            conn.execute(
                select(E.c.final_result, func.count())
                .where(*_enrolments(course, staff), E.c.final_result.is_not(None))
                .group_by(E.c.final_result)
            ).all()
        )
        d = _DayLevel(conn)
        events, clicks, learners, first, last = conn.execute(
            select(d.events, d.clicks, func.count(distinct(d.learner)), d.first, d.last).where(
                *d.live(course, staff=staff)
            )
        ).one()
        live = _live_statements(course, staff=staff)
        submissions = conn.execute(  # one per learner and assessment (_submissions)
            select(func.count()).select_from(
                select(S.c.learner, S.c.object_id)
                .where(*live, _is_submission(course))
                .distinct()
                .subquery()
            )
        ).scalar()
        courses = conn.execute(
            select(func.count()).select_from(C).where(_course_filter(C.c.id, course))
        ).scalar()
    return {
        "course": course,
        "courses": courses,
        "registrations": enrolled,
        "final_results": dict(sorted(results.items())),
        "events": int(events),
        "clicks": int(clicks),
        "submissions": submissions,
        "active_learners": learners,
        "first_event": first,
        "last_event": last,
    }


# --------------------------------------------------------------------------- resources


def _resource_activity(conn, course, learner, group, since, until) -> list:
    """The WHERE clauses of the course's learners' statements about activities (resources),
    narrowed to one ``learner`` and/or the learners of ``group``, in the window."""
    staff = _staff(conn, course)
    where = [*_live_statements(course, since, until, staff=staff), S.c.object_type == "Activity"]
    learners = _group_learners(conn, course, group, staff)
    if learner is not None:
        where.append(S.c.learner == learner)
    if learners is not None:
        where.append(S.c.learner.in_(learners))
    return where


def heatmap(
    engine: Engine,
    course: str,
    *,
    learner: str | None = None,
    group: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int | None = None,
) -> dict:
    """VLE clicks, events and distinct learners per resource (most clicked first)."""
    with engine.connect() as conn:
        if _heatmap_summed(conn, course, learner, group, since, until):
            q = (
                select(RS.c.object_id, RS.c.clicks, RS.c.events, RS.c.learners)
                .where(RS.c.course_id == course, RS.c.week.is_(None))
                .order_by(RS.c.clicks.desc(), RS.c.object_id)
            )
        else:
            q = _resource_figures(_resource_activity(conn, course, learner, group, since, until))
            q = q.order_by(q.selected_columns.clicks.desc(), S.c.object_id)
        if limit:
            q = q.limit(limit)
        rows = conn.execute(q).all()
        ids = [r.object_id for r in rows]
        meta = {}
        for i in range(0, len(ids), 500):
            for rid, kind, title in conn.execute(
                select(R.c.resource_id, R.c.type, R.c.title).where(
                    _course_filter(R.c.course_id, course), R.c.resource_id.in_(ids[i : i + 500])
                )
            ):
                meta[rid] = (kind, title)
    return {
        "course": course,
        "filters": {"learner": learner, "group": group, "since": since, "until": until},
        "resources": [
            {
                "resource": r.object_id,
                "type": meta.get(r.object_id, ("", ""))[0],
                "title": meta.get(r.object_id, ("", ""))[1],
                "clicks": int(r.clicks),
                "events": r.events,
                "learners": r.learners,
            }
            for r in rows
        ],
    }


def resource_weeks(
    engine: Engine,
    course: str,
    *,
    learner: str | None = None,
    group: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int | None = None,
) -> dict:
    """The heat-map's cells: VLE clicks and distinct learners per resource and course week.

    Resources are the ``limit`` most clicked in the window (all when ``limit`` is None), in
    that order; a cell is a (resource, week) with at least one statement (submissions are
    not clicks, so an assessment's cells have ``clicks`` 0 and count its submitters). The
    filters are :func:`heatmap`'s; weeks count from the course start (the module's rule).
    """
    ranked = heatmap(
        engine, course, learner=learner, group=group, since=since, until=until, limit=limit
    )
    resources = ranked["resources"]
    with engine.connect() as conn:
        start = _start_day(conn, course, _staff(conn, course))
        summed = _heatmap_summed(conn, course, learner, group, since, until)
        if summed:
            query = select(RS.c.object_id, RS.c.week, RS.c.clicks, RS.c.learners).where(
                RS.c.course_id == course, RS.c.week.is_not(None)
            )
        else:
            query = _resource_figures(
                _resource_activity(conn, course, learner, group, since, until), start, weekly=True
            )
        cells = []
        ids = [r["resource"] for r in resources]
        object_id = RS.c.object_id if summed else S.c.object_id
        for i in range(0, len(ids), 500):
            cells += conn.execute(query.where(object_id.in_(ids[i : i + 500]))).all()
    order = {rid: n for n, rid in enumerate(ids)}
    cells.sort(key=lambda c: (order[c.object_id], c.week))
    return {
        "course": course,
        "start": None if start is None else _date(start).isoformat(),
        "filters": ranked["filters"],
        "resources": resources,
        "cells": [
            {
                "resource": c.object_id,
                "week": int(c.week),
                "clicks": int(c.clicks),
                "learners": c.learners,
            }
            for c in cells
        ],  # fmt: skip
    }


def _resource_figures(where: list, start: int | None = None, *, weekly: bool = False):
    """Per resource (and per course week from ``start`` when ``weekly``: the heat-map's
    cells) of the statements ``where`` selects: VLE clicks, statements, distinct learners."""
    keys = [S.c.object_id, *([_week_sql(S.c.day, start or 0)] if weekly else [])]
    return (
        select(
            *keys,
            _clicks().label("clicks"),
            func.count().label("events"),
            func.count(distinct(S.c.learner)).label("learners"),
        )
        .where(*where)
        .group_by(*keys)
    )


def _sums_made(conn, course: str) -> bool:
    """Whether a course extract's sums (``resource_sums``, ``weekly_sums``, ``funnel_sums``)
    are those of the course as it is: made since its last update (:func:`refresh_sums`)."""
    if course == "*" or not _extract_has(conn, SM):
        return False
    return conn.execute(select(SM.c.course_id).where(SM.c.course_id == course)).first() is not None


def _heatmap_summed(conn, course: str, *filters) -> bool:
    """Whether the heat-map asked for (no learner, group or dates among ``filters``) is the
    extract's ``resource_sums``."""
    return all(f is None for f in filters) and _sums_made(conn, course)


def _refresh_resource_sums(conn, course: str, staff: list[str], start: int | None) -> None:
    """:func:`refresh_sums`' heat-map part: the resources pending again, or every resource
    when the course's start or staff is not what the sums were made with
    (``resource_sums_basis``); by the heat-map's own queries."""
    basis = {"start_day": start, "staff": staff}
    made = conn.execute(select(RB.c.start_day, RB.c.staff).where(RB.c.course_id == course)).first()
    pending = sorted(conn.execute(select(RP.c.object_id).where(RP.c.course_id == course)).scalars())
    if made is None or dict(made._mapping) != basis:
        conn.execute(RS.delete().where(RS.c.course_id == course))
        chunks = [None]  # every resource
    else:
        chunks = [pending[i : i + 500] for i in range(0, len(pending), 500)]
    where = _resource_activity(conn, course, None, None, None, None)
    columns = ["course_id", "object_id", "week", "clicks", "events", "learners"]
    for chunk in chunks:
        these = where
        if chunk is not None:
            these = [*where, S.c.object_id.in_(chunk)]
            conn.execute(RS.delete().where(RS.c.course_id == course, RS.c.object_id.in_(chunk)))
        for weekly in (False, True):
            figures = _resource_figures(these, start, weekly=weekly).subquery()
            week = figures.c.week if weekly else null()
            rows = select(literal(course), figures.c.object_id, week,
                          *[figures.c[k] for k in ("clicks", "events", "learners")])  # fmt: skip
            conn.execute(insert(RS).from_select(columns, rows))
    conn.execute(RP.delete().where(RP.c.course_id == course))
    conn.execute(RB.delete().where(RB.c.course_id == course))
    conn.execute(insert(RB).values(course_id=course, **basis))


def not_opened(engine: Engine, course: str, resource: str) -> dict | None:
    """Enrolled learners (not unregistered) with no statement about ``resource``."""
    with engine.connect() as conn:
        known = conn.execute(
            select(R.c.resource_id).where(
                _course_filter(R.c.course_id, course), R.c.resource_id == resource
            )
        ).first()
        seen = conn.execute(
            select(func.count()).where(
                _course_filter(S.c.course_id, course), S.c.object_id == resource
            )
        ).scalar()
        if known is None and not seen:
            return None
        staff = _staff(conn, course)
        openers = select(S.c.learner).where(
            _course_filter(S.c.course_id, course), S.c.object_id == resource, S.c.voided.is_(False)
        )
        rows = conn.execute(
            select(E.c.learner)
            .where(
                *_enrolments(course, staff),
                E.c.unregistered_at.is_(None),
                E.c.learner.not_in(openers),
            )
            .order_by(E.c.learner)
        ).scalars()
        learners = list(rows)
        enrolled = conn.execute(
            select(func.count())
            .select_from(E)
            .where(*_enrolments(course, staff), E.c.unregistered_at.is_(None))
        ).scalar()
    return {
        "course": course,
        "resource": resource,
        "enrolled": enrolled,
        "not_opened": len(learners),
        "learners": learners,
    }


# --------------------------------------------------------------------------- activity


def daily_activity(
    engine: Engine,
    course: str,
    *,
    since: date | None = None,
    until: date | None = None,
    measure: str = "learners",
) -> dict:
    """Per day: distinct learners (``measure=learners``), statements (``events``) or VLE
    clicks (``clicks``)."""
    with engine.connect() as conn:
        d = _DayLevel(conn)
        value = {
            "learners": func.count(distinct(d.learner)),
            "events": d.events,
            "clicks": d.clicks,
        }[measure]
        where = d.live(course, since, until, staff=_staff(conn, course))
        rows = conn.execute(
            select(d.day, value).where(*where).group_by(d.day).order_by(d.day)
        ).all()
    return {
        "course": course,
        "measure": measure,
        "since": since,
        "until": until,
        "days": [{"date": _date(day).isoformat(), "value": int(v)} for day, v in rows],
    }


def _enrolled(conn, course: str, staff: list[str]) -> int:
    return conn.execute(
        select(func.count()).select_from(E).where(*_enrolments(course, staff))
    ).scalar()


def _weekly_rows(conn, course: str, staff: list[str], start: int | None) -> list[tuple]:
    """(week, active learners, events, clicks) of each course week with a statement."""
    if start is None:  # there is no learner event
        return []
    d = _DayLevel(conn)
    week = _week_sql(d.day, start)
    rows = conn.execute(
        select(week, func.count(distinct(d.learner)), d.events, d.clicks)
        .where(*d.live(course, staff=staff))
        .group_by(week)
        .order_by(week)
    )
    return [(int(w), learners, int(events), int(clicks)) for w, learners, events, clicks in rows]


def weekly_engagement(engine: Engine, course: str) -> dict:
    """Per course week: active learners, their share of the enrolled, events, VLE clicks."""
    with engine.connect() as conn:
        staff = _staff(conn, course)
        start = _start_day(conn, course, staff)
        enrolled = _enrolled(conn, course, staff)
        if _sums_made(conn, course):
            rows = conn.execute(
                select(WS.c.week, WS.c.active_learners, WS.c.events, WS.c.clicks)
                .where(WS.c.course_id == course)
                .order_by(WS.c.week)
            ).all()
        else:
            rows = _weekly_rows(conn, course, staff, start)
    return {
        "course": course,
        "start": None if start is None else _date(start).isoformat(),
        "enrolled": enrolled,
        "weeks": [
            {
                "week": week,
                "active_learners": learners,
                "active_share": round(learners / enrolled, 4) if enrolled else None,
                "events": events,
                "clicks": clicks,
            }
            for week, learners, events, clicks in rows
        ],
    }


def _funnel_weeks(conn, course: str, staff: list[str], start: int | None) -> list[dict]:
    """:func:`funnel`'s weeks."""
    weeks_of: dict[str, set[int]] = defaultdict(set)
    if start is not None:  # else there is no learner event
        d = _DayLevel(conn)
        week = _week_sql(d.day, start)
        rows = conn.execute(
            select(d.learner, week).where(*d.live(course, staff=staff)).group_by(d.learner, week)
        )
        for learner, w in rows:
            weeks_of[learner].add(int(w))
    if not weeks_of:
        return []
    first = min(min(w) for w in weeks_of.values())
    last = max(max(w) for w in weeks_of.values())
    span = last - first + 1
    # one pass over the learners (it was one per week, and per week every week before it):
    # per week offset, the learners active then, those whose last week it is, and those
    # whose unbroken run of active weeks from the first ends there
    active, ends, runs_end = [0] * span, [0] * span, [0] * span
    for weeks in weeks_of.values():
        for w in weeks:
            active[w - first] += 1
        ends[max(weeks) - first] += 1
        run = 0
        while first + run in weeks:
            run += 1
        if run:
            runs_end[run - 1] += 1
    reached, every = _from_the_end(ends), _from_the_end(runs_end)
    return [
        {"week": first + i, "reached": reached[i], "active": active[i], "active_every_week": every[i]}
        for i in range(span)
    ]  # fmt: skip


def funnel(engine: Engine, course: str) -> dict:
    """The weekly progress funnel: per week, learners still around and learners active.

    ``reached``: enrolled learners whose last activity is in this week or later (they got
    this far); ``active``: learners with activity in this week; ``active_every_week``:
    learners active in every week from the first to this one.
    """
    with engine.connect() as conn:
        staff = _staff(conn, course)
        start = _start_day(conn, course, staff)
        enrolled = _enrolled(conn, course, staff)
        if _sums_made(conn, course):
            columns = ("week", "reached", "active", "active_every_week")
            out = [
                dict(r._mapping)
                for r in conn.execute(
                    select(*[FS.c[k] for k in columns])
                    .where(FS.c.course_id == course)
                    .order_by(FS.c.week)
                )
            ]
        else:
            out = _funnel_weeks(conn, course, staff, start)
    if not out:
        return {"course": course, "enrolled": enrolled, "weeks": []}
    return {"course": course, "enrolled": enrolled, "start": _date(start).isoformat(), "weeks": out}


def refresh_sums(engine: Engine, course: str) -> None:
    """Make a course extract's sums again and mark them made, in one transaction: the
    heat-map's (of the resources an update touched), the weekly activity's and the
    funnel's (whole), each by its route's own queries. The extract's maintenance calls it
    after each update, whose transaction unmarks them: until this commits, the routes read
    ``learner_days`` and the statements."""
    with engine.begin() as conn:
        staff = _staff(conn, course)
        start = _start_day(conn, course, staff)
        _refresh_resource_sums(conn, course, staff, start)
        weekly = _weekly_rows(conn, course, staff, start)
        weeks = _funnel_weeks(conn, course, staff, start)
        for table in (WS, FS, SM):
            conn.execute(table.delete().where(table.c.course_id == course))
        columns = ("week", "active_learners", "events", "clicks")
        if weekly:
            conn.execute(
                insert(WS),
                [{"course_id": course, **dict(zip(columns, r, strict=True))} for r in weekly],
            )
        if weeks:
            conn.execute(insert(FS), [{"course_id": course, **w} for w in weeks])
        conn.execute(insert(SM).values(course_id=course))


def _from_the_end(counts: list[int]) -> list[int]:
    """Running sums from the last item back: ``[1, 2, 3]`` -> ``[6, 5, 3]``."""
    out, total = [0] * len(counts), 0
    for i in range(len(counts) - 1, -1, -1):
        total += counts[i]
        out[i] = total
    return out


# --------------------------------------------------------------------------- segments


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default)."""
    if not values:
        return 0.0
    values = sorted(values)
    pos = (len(values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


SEGMENT_RULE = (
    "Over enrolled learners not unregistered (staff excluded), counting VLE clicks in the window "
    "(assessment submissions are not clicks). "
    "inactive: no activity. Percentiles are taken over the non-zero values only (edX's rule). "
    "highly_engaged: clicks at or above the 90th percentile. "
    "struggling: active, and clicks at or below the 25th percentile or a mean assessment "
    f"score below {PASS_MARK:g}. Everyone else is 'engaged'."
)


def segments(
    engine: Engine, course: str, *, since: date | None = None, until: date | None = None
) -> dict:
    """Inactive, struggling and highly engaged learners (the rule is in ``rule``)."""
    with engine.connect() as conn:
        staff = _staff(conn, course)
        where = _live_statements(course, since, until, staff=staff)
        enrolled = list(
            conn.execute(
                select(E.c.learner).where(
                    *_enrolments(course, staff), E.c.unregistered_at.is_(None)
                )
            ).scalars()
        )
        d = _DayLevel(conn)
        clicks = dict(
            conn.execute(
                select(d.learner, d.clicks)
                .where(*d.live(course, since, until, staff=staff))
                .group_by(d.learner)
            ).all()
        )
        scored = [*where, S.c.score.is_not(None)]
        mean_score = dict(
            conn.execute(
                select(S.c.learner, func.avg(S.c.score)).where(*scored).group_by(S.c.learner)
            ).all()
        )
    population = sorted(set(enrolled)) if enrolled else sorted(clicks)
    nonzero = [float(clicks[x]) for x in population if clicks.get(x)]
    p25, p90 = _percentile(nonzero, 25), _percentile(nonzero, 90)
    groups = {"inactive": [], "struggling": [], "engaged": [], "highly_engaged": []}
    for learner in population:
        n = float(clicks.get(learner) or 0)
        if n == 0:
            groups["inactive"].append(learner)
        elif n >= p90:
            groups["highly_engaged"].append(learner)
        elif n <= p25 or (learner in mean_score and mean_score[learner] < PASS_MARK):
            groups["struggling"].append(learner)
        else:
            groups["engaged"].append(learner)
    return {
        "course": course,
        "rule": SEGMENT_RULE,
        "since": since,
        "until": until,
        "thresholds": {"p25_clicks": p25, "p90_clicks": p90, "pass_mark": PASS_MARK},
        "counts": {k: len(v) for k, v in groups.items()},
        "segments": {k: v for k, v in groups.items() if k != "engaged"},
    }


# --------------------------------------------------------------------------- learner


def learner_profile(engine: Engine, course: str, learner: str) -> dict | None:
    """ "Know thy student": enrolment, weekly activity and completion, assessments, last activity."""
    with engine.connect() as conn:
        enrolment = conn.execute(
            select(E).where(_course_filter(E.c.course_id, course), E.c.learner == learner)
        ).first()
        mine = and_(
            _course_filter(S.c.course_id, course), S.c.learner == learner, S.c.voided.is_(False)
        )
        totals = conn.execute(
            select(func.count(), _clicks(), func.count(distinct(S.c.day)),
                   func.min(S.c.timestamp), func.max(S.c.timestamp)).where(mine)
        ).one()  # fmt: skip
        if enrolment is None and totals[0] == 0:
            return None
        start = _start_day(conn, course, _staff(conn, course))
        if start is None:  # only staff have events: weeks from this one's first
            start = _day(totals[3].date()) if totals[3] else 0
        # the learner's rows, through the (course, learner) index, aggregated here: a
        # GROUP BY or DISTINCT tempts SQLite into scanning the whole course by another index
        weeks: dict[int, dict] = defaultdict(lambda: {"events": 0, "clicks": 0, "days": set()})
        opened, completed = set(), set()
        for day, clicks, object_id, verb in conn.execute(
            select(S.c.day, S.c.clicks, S.c.object_id, S.c.verb).where(mine)
        ):
            w = weeks[_week(day, start)]
            w["events"] += 1
            w["clicks"] += clicks if verb == VIEWED else 0
            w["days"].add(day)
            opened.add(object_id)
            if verb == COMPLETED:
                completed.add(object_id)
        planned: dict[int, list[str]] = defaultdict(list)
        for rid, week_from in conn.execute(
            select(R.c.resource_id, R.c.week_from).where(
                _course_filter(R.c.course_id, course), R.c.week_from.is_not(None)
            )
        ):
            planned[week_from].append(rid)
        assessments = conn.execute(
            select(A.c.assessment_id, A.c.type, A.c.due_at, A.c.weight)
            .where(_course_filter(A.c.course_id, course))
            .order_by(A.c.due_at, A.c.assessment_id)
        ).all()
        submissions = {
            object_id: got
            for (object_id, _), got in _submissions(
                conn, mine, S.c.object_id.in_([a.assessment_id for a in assessments])
            ).items()
        }
        last_hub = conn.execute(
            select(func.max(S.c.timestamp)).where(mine, S.c.source == "hub")
        ).scalar()
    rows = []
    for a in assessments:
        ts, score = submissions.get(a.assessment_id, (None, None))
        late_days = (ts.date() - a.due_at.date()).days if ts and a.due_at else None
        status = (
            "missing"
            if ts is None
            else ("late" if late_days is not None and late_days > 0 else "on time")
        )
        rows.append({"assessment": a.assessment_id, "type": a.type, "due": a.due_at, "weight": a.weight,
                     "submitted": ts, "days_late": late_days, "score": score, "status": status})  # fmt: skip
    scores = [r["score"] for r in rows if r["score"] is not None]
    return {
        "course": course,
        "learner": learner,
        "enrolment": None
        if enrolment is None
        else {
            "registered": enrolment.registered_at,
            "unregistered": enrolment.unregistered_at,
            "final_result": enrolment.final_result,
            "attributes": enrolment.attributes or {},
        },
        "activity": {
            "events": totals[0],
            "clicks": int(totals[1]),
            "submissions": sum(1 for r in rows if r["submitted"] is not None),
            "active_days": totals[2],
            "first": totals[3],
            "last": totals[4],
            "last_on_hub": last_hub,
        },
        "weeks": [
            {"week": k, "events": v["events"], "clicks": v["clicks"], "active_days": len(v["days"])}
            for k, v in sorted(weeks.items())
        ],
        "completion_by_week": [
            {
                "week": week,
                "planned": len(ids),
                "opened": sum(1 for i in ids if i in opened),
                "completed": sum(1 for i in ids if i in completed),
            }
            for week, ids in sorted(planned.items())
        ],
        "assessments": rows,
        "mean_score": round(statistics.fmean(scores), 2) if scores else None,
    }


# --------------------------------------------------------------------------- sessions


def _split(times: list[datetime], gap: timedelta) -> list[list[datetime]]:
    out: list[list[datetime]] = []
    for t in times:
        if out and t - out[-1][-1] <= gap:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def sessions(
    engine: Engine, course: str, learner: str, *, gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES
) -> dict | None:
    """A learner's study sessions: split where two events are more than ``gap_minutes`` apart.

    Offsets are seconds since the learner's first event in the course.
    """
    gap = timedelta(minutes=gap_minutes)
    with engine.connect() as conn:
        times = list(
            conn.execute(
                select(S.c.timestamp)
                .where(
                    _course_filter(S.c.course_id, course),
                    S.c.learner == learner,
                    S.c.voided.is_(False),
                )
                .order_by(S.c.timestamp, S.c.pk)
            ).scalars()
        )
    if not times:
        return None
    origin = times[0]
    out = []
    for chunk in _split(times, gap):
        out.append({
            "start": chunk[0],
            "end": chunk[-1],
            "start_offset_s": (chunk[0] - origin).total_seconds(),
            "duration_s": (chunk[-1] - chunk[0]).total_seconds(),
            "events": len(chunk),
        })  # fmt: skip
    return {
        "course": course,
        "learner": learner,
        "gap_minutes": gap_minutes,
        "first_event": origin,
        "sessions": out,
        "total_time_s": sum(s["duration_s"] for s in out),
    }


@functools.lru_cache(maxsize=65536)
def _position(object_id: str) -> tuple:
    """A step's position from its IRI, for ordering same-second events: numbers compare as
    numbers (``...:step:2.10`` after ``...:step:2.9``), so the order never depends on the
    order the rows were stored in."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"([0-9]+)", object_id)
        if part
    )


TIME_ON_STEP_RULE = (
    "Time on a step is, per learner, the time from opening the step (a 'viewed' event) to "
    "opening the next step, when no two of the learner's events between them are more than "
    "the gap apart (one session), summed over the learner's visits; events in the same "
    "second are ordered by the step's position. Known biases: the last step opened in a "
    "session has no end and is not measured (nor is a step after which the learner left), "
    "so a step that often ends a session is measured on fewer learners; time spent on other "
    "pages between two openings is credited to the first step; FutureLearn records only the "
    "first visit of each step, so a return visit is credited to the step opened before it. "
    "Staff are excluded. 'measured' counts learners. Courses whose events are dated to the day "
    "only (OULAD's daily click counts) are not measured: they are listed in 'not_measured'."
)


def time_on_step(
    engine: Engine,
    course: str,
    *,
    gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES,
    limit: int | None = None,
) -> dict:
    """Median and 75th-percentile time on each step, over the learners measured on it (the
    definition and its biases are in ``rule``, :data:`TIME_ON_STEP_RULE`)."""
    gap = timedelta(minutes=gap_minutes)
    per_learner: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    learners = set()

    def measure(learner: str, events: list[tuple]) -> None:
        events.sort(key=lambda e: (e[0], _position(e[1]), e[2] != VIEWED))
        opened = None  # (time, step) of the last opening in this session
        last = None
        for ts, obj, verb in events:
            if last is not None and ts - last > gap:
                opened = None  # a new session: the open step has no end
            last = ts
            if verb != VIEWED:
                continue
            if opened is not None:
                per_learner[opened[1]][learner] += (ts - opened[0]).total_seconds()
            opened = (ts, obj)

    with engine.connect() as conn:
        staff = _staff(conn, course)
        by_day = sorted(
            conn.execute(
                select(C.c.id).where(
                    _course_filter(C.c.id, course),
                    C.c.attributes["timestamps"].as_string() == DAY_TIMESTAMPS,
                )
            ).scalars()
        )
        where = [*_live_statements(course, staff=staff), S.c.object_type == "Activity"]
        if by_day:
            where.append(S.c.course_id.not_in(by_day))
        rows = []
        if course not in by_day:  # else nothing to measure: no scan
            rows = conn.execution_options(yield_per=5000).execute(
                select(S.c.learner, S.c.timestamp, S.c.object_id, S.c.verb)
                .where(*where)
                .order_by(S.c.learner)
            )
        current, events = None, []
        for learner, ts, obj, verb in rows:
            if learner != current:
                if events:
                    measure(current, events)
                current, events = learner, []
            learners.add(learner)
            events.append((ts, obj, verb))
        if events:
            measure(current, events)
    steps = []
    for step, by_learner in per_learner.items():
        values = list(by_learner.values())
        steps.append({
            "step": step,
            "measured": len(values),
            "median_s": _percentile(values, 50),
            "p75_s": _percentile(values, 75),
        })  # fmt: skip
    steps.sort(key=lambda s: (-s["measured"], _position(s["step"])))
    if limit:
        steps = steps[:limit]
    return {
        "course": course,
        "gap_minutes": gap_minutes,
        "rule": TIME_ON_STEP_RULE,
        "learners": len(learners),
        "steps": steps,
        "not_measured": [
            {"course": c, "reason": "its events are dated to the day only"} for c in by_day
        ],
    }


# --------------------------------------------------------------------------- assessments


def assessment_scores(engine: Engine, course: str) -> dict:
    """Per assessment: submissions (one per learner: the module's definition), late and
    missing ones, score distribution (10-point bins)."""
    with engine.connect() as conn:
        assessments = conn.execute(
            select(A.c.course_id, A.c.assessment_id, A.c.type, A.c.due_at, A.c.weight)
            .where(_course_filter(A.c.course_id, course))
            .order_by(A.c.course_id, A.c.due_at, A.c.assessment_id)
        ).all()
        staff = _staff(conn, course)
        subs: dict[str, list[tuple[datetime, float | None]]] = defaultdict(list)
        for (object_id, _), got in _submissions(
            conn,
            *_live_statements(course, staff=staff),
            S.c.object_id.in_(
                select(A.c.assessment_id).where(_course_filter(A.c.course_id, course))
            ),
        ).items():
            subs[object_id].append(got)
        # enrolments: who could still submit at each due date
        enrol = conn.execute(
            select(E.c.course_id, E.c.unregistered_at).where(*_enrolments(course, staff))
        ).all()
    by_course: dict[str, list[datetime | None]] = defaultdict(list)
    for cid, unreg in enrol:
        by_course[cid].append(unreg)
    out = []
    for a in assessments:
        got = subs.get(a.assessment_id, [])
        scores = [s for _, s in got if s is not None]
        late = sum(1 for ts, _ in got if a.due_at is not None and ts.date() > a.due_at.date())
        expected = sum(
            1
            for unreg in by_course[a.course_id]
            if unreg is None or a.due_at is None or unreg > a.due_at
        )
        bins = [0] * 10
        for s in scores:
            bins[min(int(s // 10), 9)] += 1
        out.append({
            "assessment": a.assessment_id,
            "course": a.course_id,
            "type": a.type,
            "due": a.due_at,
            "weight": a.weight,
            "submitted": len(got),
            "late": late,
            "missing": max(expected - len(got), 0),
            "scored": len(scores),
            "mean": round(statistics.fmean(scores), 2) if scores else None,
            "median": statistics.median(scores) if scores else None,
            "histogram": [{"from": i * 10, "to": i * 10 + 10 if i < 9 else 100, "count": n} for i, n in enumerate(bins)],
        })  # fmt: skip
    return {"course": course, "assessments": out}


# --------------------------------------------------------------------------- FutureLearn


def _number_of(iri: str) -> str:
    """``urn:futurelearn:ecsa-6:question:1.3.2`` -> ``1.3.2``."""
    return iri.rsplit(":", 1)[-1]


QUIZ_RULE = (
    "Per question, over the learners who answered it (staff excluded): 'attempts' are a "
    "learner's submitted answers, 'right_first_time' the learners whose first answer was "
    "right, 'right_eventually' those with a right answer at any attempt. A learner's answers "
    "are ordered by time; in the same second a wrong answer comes before a right one (a "
    "learner stops once right). Questions are in course order (week, step, question). Known "
    "biases: a learner who saw the answer elsewhere is right first time; FutureLearn's "
    "quizzes let learners try again, its tests only a few times, so attempts are not comparable "
    "between the two."
)


def quiz_answers(engine: Engine, course: str) -> dict:
    """Quiz answers per question: learners, right first time (share), attempts per learner
    (mean and median), in course order (the rule is in ``rule``, :data:`QUIZ_RULE`)."""
    answers: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    success = S.c.raw["result"]["success"].as_boolean()
    with engine.connect() as conn:
        staff = _staff(conn, course)
        rows = conn.execute(
            select(S.c.object_id, S.c.learner, S.c.timestamp, success).where(
                *_live_statements(course, staff=staff),
                S.c.object_type == "Activity",
                S.c.verb == ANSWERED,
            )
        )
        for question, learner, ts, right in rows:
            answers[question][learner].append((ts, bool(right)))
    out = []
    for question in sorted(answers, key=_position):
        by_learner = answers[question]
        firsts = [min(attempts)[1] for attempts in by_learner.values()]  # (time, wrong first)
        counts = [len(attempts) for attempts in by_learner.values()]
        right_first = sum(firsts)
        out.append({
            "question": question,
            "number": _number_of(question),
            "learners": len(by_learner),
            "answers": sum(counts),
            "right_first_time": right_first,
            "right_first_time_share": round(right_first / len(firsts), 4),
            "right_eventually": sum(any(r for _, r in a) for a in by_learner.values()),
            "attempts_mean": round(statistics.fmean(counts), 4),
            "attempts_median": float(statistics.median(counts)),
        })  # fmt: skip
    return {"course": course, "rule": QUIZ_RULE, "questions": out}


#: video-stats' viewed_*_percent columns, in order: how much of a video a view reached
VIDEO_REACHED = (5, 10, 25, 50, 75, 95, 100)


def video_completion(engine: Engine, course: str) -> dict:
    """Per video step, in course order: FutureLearn's views, downloads, duration and the
    completion curve (per point of the video, the % of views that reached it), beside the
    distinct learners (staff excluded) who opened the step."""
    with engine.connect() as conn:
        videos = conn.execute(select(V).where(_course_filter(V.c.course_id, course))).all()
        staff = _staff(conn, course)
        steps = {f"urn:futurelearn:{v.course_id}:step:{v.step}": v.step for v in videos}
        opened = dict(
            conn.execute(
                select(S.c.object_id, func.count(distinct(S.c.learner)))
                .where(
                    *_live_statements(course, staff=staff),
                    S.c.verb == VIEWED,
                    S.c.object_id.in_(list(steps)),
                )
                .group_by(S.c.object_id)
            ).all()
        )
    by_step = {steps[iri]: n for iri, n in opened.items()}
    out = []
    for v in sorted(videos, key=lambda v: (_position(v.step), v.course_id)):
        out.append({
            "step": v.step,
            "title": v.title,
            "duration_s": v.duration_s,
            "views": v.views,
            "downloads": v.downloads,
            "caption_views": v.caption_views,
            "transcript_views": v.transcript_views,
            "viewed_hd_percent": v.viewed_hd,
            "learners_opened_step": by_step.get(v.step, 0),
            "curve": [
                {"reached_percent": n, "views_percent": (v.viewed_percent or {}).get(str(n))}
                for n in VIDEO_REACHED
            ],
        })  # fmt: skip
    return {"course": course, "videos": out}


def sentiment_weekly(engine: Engine, course: str) -> dict:
    """The weekly sentiment survey per week (responses, mean rating, responses per rating)
    next to that week's active learners (:func:`weekly_engagement`'s): FutureLearn's week
    ``n`` is course week ``n - 1`` (week 0 is the first seven days from the start)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Q.c.week_number, Q.c.rating, func.count())
            .where(_course_filter(Q.c.course_id, course), Q.c.survey == "weekly-sentiment")
            .group_by(Q.c.week_number, Q.c.rating)
        ).all()
    ratings: dict[int, dict[int, int]] = defaultdict(dict)
    for week, rating, n in rows:
        ratings[week][rating] = n
    active = {
        w["week"] + 1: w["active_learners"] for w in weekly_engagement(engine, course)["weeks"]
    }
    weeks = []
    for week in sorted(set(ratings) | {w for w in active if w >= 1}):
        got = ratings.get(week, {})
        responses = sum(got.values())
        mean = sum(r * n for r, n in got.items()) / responses if responses else None
        weeks.append({
            "week_number": week,
            "course_week": week - 1,
            "responses": responses,
            "mean_rating": None if mean is None else round(mean, 4),
            "ratings": [{"rating": r, "responses": n} for r, n in sorted(got.items())],
            "active_learners": active.get(week, 0),
        })  # fmt: skip
    return {"course": course, "weeks": weeks}


def leavers(engine: Engine, course: str) -> dict:
    """The leaving survey (staff excluded): how many answered, their reasons (most given
    first), and the week and step of the last step they had completed (in course order;
    ``null`` for none), beside the learners who unenrolled."""
    with engine.connect() as conn:
        staff = _staff(conn, course)
        where = [_course_filter(Q.c.course_id, course), Q.c.survey == "leaving"]
        if staff:
            where.append(Q.c.learner.not_in(staff))
        rows = conn.execute(select(Q.c.answer, Q.c.week_number, Q.c.step).where(*where)).all()
        unenrolled = conn.execute(
            select(func.count())
            .select_from(E)
            .where(*_enrolments(course, staff), E.c.unregistered_at.is_not(None))
        ).scalar()

    reasons = Counter(r.answer for r in rows)
    weeks = Counter(r.week_number for r in rows)
    steps = Counter(r.step for r in rows)
    return {
        "course": course,
        "responses": len(rows),
        "unenrolled": unenrolled,
        "reasons": [
            {"reason": r, "responses": reasons[r]}
            for r in sorted(reasons, key=lambda r: (-reasons[r], r is None, r or ""))
        ],
        "last_completed_week": [
            {"week_number": w, "responses": weeks[w]}
            for w in sorted(weeks, key=lambda w: (w is None, w or 0))
        ],
        "last_completed_step": [
            {"step": st, "responses": steps[st]}
            for st in sorted(steps, key=lambda st: (st is None, _position(st or "")))
        ],
    }
