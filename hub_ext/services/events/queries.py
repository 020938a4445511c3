"""What the analytics notebooks ask the event store (read-only), as plain functions.

Every function takes an engine and a course id and returns JSON-ready data. ``course``
``"*"`` means every course in the store (an institution-wide view; the analytics service
sets ``COURSE_ID`` to one course for a course's notebooks). Parameters coming from a
request are checked by the ``param_*`` helpers, which raise :class:`BadParameter` (the
notebooks answer it with status 400 and ``{"error": ..., "parameter": ...}``).

Weeks are counted from the course's start (``courses.starts_at``; the first event when the
course has no row): week 0 is the first seven days, days before the start fall in negative
weeks.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import traceback
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, and_, distinct, func, literal, select

from .models import Assessment, Course, Enrolment, Resource, Statement
from .store import make_engine

__all__ = [
    "BadParameter",
    "DEFAULT_SESSION_GAP_MINUTES",
    "assessment_scores",
    "connect",
    "daily_activity",
    "funnel",
    "heatmap",
    "learner_profile",
    "not_opened",
    "param_choice",
    "param_date",
    "param_int",
    "param_str",
    "respond",
    "response_info",
    "segments",
    "sessions",
    "summary",
    "time_on_step",
    "weekly_engagement",
]

DEFAULT_SESSION_GAP_MINUTES = 55
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
#: OU pass mark: a mean assessment score below it counts as struggling
PASS_MARK = 40.0
_EPOCH = date(1970, 1, 1)
S = Statement.__table__
E = Enrolment.__table__
R = Resource.__table__
A = Assessment.__table__
C = Course.__table__


class BadParameter(ValueError):
    """A request parameter that is missing or malformed (the route answers 400)."""

    def __init__(self, parameter: str, message: str):
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")

    def as_json(self) -> dict:
        return {"error": str(self), "parameter": self.parameter}


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
    ``{"error", "parameter"}`` for a :class:`BadParameter`, 404 when it returns None, 500
    with a generic error (the traceback goes to the kernel's stderr, not the caller).
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
        return 500, json.dumps({"error": "internal error; see the analytics service log"})
    if result is None:
        return 404, json.dumps({"error": "not found"})
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
    try:
        number = int(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a whole number") from None
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
        return date.fromisoformat(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a date (YYYY-MM-DD)") from None


def param_choice(request, name: str, choices: Iterable[str], default: str):
    value = _arg(request, name) or default
    choices = tuple(choices)
    if value not in choices:
        raise BadParameter(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _live_statements(course: str, since: date | None = None, until: date | None = None) -> list:
    """The WHERE clauses of the course's statements that are not voided, from the day
    ``since`` to the day ``until`` (both included, either open); :class:`BadParameter` if
    ``since`` is after ``until``."""
    if since and until and since > until:
        raise BadParameter("since", f"{since} is after until ({until})")
    where = [_course_filter(S.c.course_id, course), S.c.voided.is_(False)]
    if since:
        where.append(S.c.day >= _day(since))
    if until:
        where.append(S.c.day <= _day(until))
    return where


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def _course_filter(column, course: str):
    return literal(True) if course == "*" else column == course


def _start_day(conn, course: str) -> int:
    """The course's first day (UTC day number)."""
    if course == "*":
        start = conn.execute(select(func.min(C.c.starts_at))).scalar()
    else:
        start = conn.execute(select(C.c.starts_at).where(C.c.id == course)).scalar()
    if start is not None:
        return _day(start.date())
    first = conn.execute(
        select(func.min(S.c.day)).where(_course_filter(S.c.course_id, course))
    ).scalar()
    return first if first is not None else 0


def _week(day: int, start: int) -> int:
    return (day - start) // 7


def _group_learners(conn, course: str, group: str | None) -> list[str] | None:
    """Learners of the course whose enrolment matches ``group`` (``key:value``)."""
    if group is None:
        return None
    if ":" not in group:
        raise BadParameter(
            "group", f"{group!r} is not key:value, e.g. final_result:Fail or region:Scotland"
        )
    key, value = group.split(":", 1)
    rows = conn.execute(
        select(E.c.learner, E.c.final_result, E.c.attributes).where(
            _course_filter(E.c.course_id, course)
        )
    )
    out = []
    for learner, final_result, attributes in rows:
        have = final_result if key == "final_result" else (attributes or {}).get(key)
        if have is not None and str(have) == value:
            out.append(learner)
    return out


# --------------------------------------------------------------------------- summary


def summary(engine: Engine, course: str) -> dict:
    """Registrations, final results, and event totals of a course."""
    with engine.connect() as conn:
        enrolled = conn.execute(
            select(func.count()).select_from(E).where(_course_filter(E.c.course_id, course))
        ).scalar()
        results = dict(
            conn.execute(
                select(E.c.final_result, func.count())
                .where(_course_filter(E.c.course_id, course), E.c.final_result.is_not(None))
                .group_by(E.c.final_result)
            ).all()
        )
        events, clicks, learners, first, last = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(S.c.clicks), 0),
                func.count(distinct(S.c.learner)),
                func.min(S.c.timestamp),
                func.max(S.c.timestamp),
            ).where(_course_filter(S.c.course_id, course), S.c.voided.is_(False))
        ).one()
        courses = conn.execute(
            select(func.count()).select_from(C).where(_course_filter(C.c.id, course))
        ).scalar()
    return {
        "course": course,
        "courses": courses,
        "registrations": enrolled,
        "final_results": dict(sorted(results.items())),
        "events": events,
        "clicks": int(clicks),
        "active_learners": learners,
        "first_event": first,
        "last_event": last,
    }


# --------------------------------------------------------------------------- resources


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
    """Clicks, events and distinct learners per resource (most clicked first)."""
    where = [*_live_statements(course, since, until), S.c.object_type == "Activity"]
    with engine.connect() as conn:
        learners = _group_learners(conn, course, group)
        if learner is not None:
            where.append(S.c.learner == learner)
        if learners is not None:
            where.append(S.c.learner.in_(learners))
        clicks = func.sum(S.c.clicks).label("clicks")
        q = (
            select(
                S.c.object_id,
                clicks,
                func.count().label("events"),
                func.count(distinct(S.c.learner)).label("learners"),
            )
            .where(*where)
            .group_by(S.c.object_id)
            .order_by(clicks.desc(), S.c.object_id)
        )
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
        openers = select(S.c.learner).where(
            _course_filter(S.c.course_id, course), S.c.object_id == resource, S.c.voided.is_(False)
        )
        rows = conn.execute(
            select(E.c.learner)
            .where(
                _course_filter(E.c.course_id, course),
                E.c.unregistered_at.is_(None),
                E.c.learner.not_in(openers),
            )
            .order_by(E.c.learner)
        ).scalars()
        learners = list(rows)
        enrolled = conn.execute(
            select(func.count())
            .select_from(E)
            .where(_course_filter(E.c.course_id, course), E.c.unregistered_at.is_(None))
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
    """Per day: distinct learners (``measure=learners``), statements (``events``) or clicks."""
    where = _live_statements(course, since, until)
    value = {
        "learners": func.count(distinct(S.c.learner)),
        "events": func.count(),
        "clicks": func.sum(S.c.clicks),
    }[measure]
    with engine.connect() as conn:
        rows = conn.execute(
            select(S.c.day, value).where(*where).group_by(S.c.day).order_by(S.c.day)
        ).all()
    return {
        "course": course,
        "measure": measure,
        "since": since,
        "until": until,
        "days": [{"date": _date(day).isoformat(), "value": int(v)} for day, v in rows],
    }


def _enrolled(conn, course: str) -> int:
    return conn.execute(
        select(func.count()).select_from(E).where(_course_filter(E.c.course_id, course))
    ).scalar()


def weekly_engagement(engine: Engine, course: str) -> dict:
    """Per course week: active learners, their share of the enrolled, events, clicks."""
    with engine.connect() as conn:
        start = _start_day(conn, course)
        enrolled = _enrolled(conn, course)
        rows = conn.execute(
            select(S.c.day, S.c.learner, func.count(), func.sum(S.c.clicks))
            .where(_course_filter(S.c.course_id, course), S.c.voided.is_(False))
            .group_by(S.c.day, S.c.learner)
        )
        weeks: dict[int, dict] = defaultdict(lambda: {"learners": set(), "events": 0, "clicks": 0})
        for day, learner, events, clicks in rows:
            w = weeks[_week(day, start)]
            w["learners"].add(learner)
            w["events"] += events
            w["clicks"] += int(clicks)
    return {
        "course": course,
        "start": _date(start).isoformat(),
        "enrolled": enrolled,
        "weeks": [
            {
                "week": week,
                "active_learners": len(w["learners"]),
                "active_share": round(len(w["learners"]) / enrolled, 4) if enrolled else None,
                "events": w["events"],
                "clicks": w["clicks"],
            }
            for week, w in sorted(weeks.items())
        ],
    }


def funnel(engine: Engine, course: str) -> dict:
    """The weekly progress funnel: per week, learners still around and learners active.

    ``reached``: enrolled learners whose last activity is in this week or later (they got
    this far); ``active``: learners with activity in this week; ``active_every_week``:
    learners active in every week from the first to this one.
    """
    with engine.connect() as conn:
        start = _start_day(conn, course)
        enrolled = _enrolled(conn, course)
        rows = conn.execute(
            select(S.c.learner, S.c.day)
            .where(_course_filter(S.c.course_id, course), S.c.voided.is_(False))
            .group_by(S.c.learner, S.c.day)
        )
        weeks_of: dict[str, set[int]] = defaultdict(set)
        for learner, day in rows:
            weeks_of[learner].add(_week(day, start))
    if not weeks_of:
        return {"course": course, "enrolled": enrolled, "weeks": []}
    first = min(min(w) for w in weeks_of.values())
    last = max(max(w) for w in weeks_of.values())
    out = []
    for week in range(first, last + 1):
        active = sum(1 for w in weeks_of.values() if week in w)
        reached = sum(1 for w in weeks_of.values() if max(w) >= week)
        every = sum(1 for w in weeks_of.values() if all(k in w for k in range(first, week + 1)))
        out.append({"week": week, "reached": reached, "active": active, "active_every_week": every})
    return {"course": course, "enrolled": enrolled, "start": _date(start).isoformat(), "weeks": out}


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
    "Over enrolled learners not unregistered, counting clicks in the window. "
    "inactive: no activity. Percentiles are taken over the non-zero values only (edX's rule). "
    "highly_engaged: clicks at or above the 90th percentile. "
    "struggling: active, and clicks at or below the 25th percentile or a mean assessment "
    f"score below {PASS_MARK:g}. Everyone else is 'engaged'."
)


def segments(
    engine: Engine, course: str, *, since: date | None = None, until: date | None = None
) -> dict:
    """Inactive, struggling and highly engaged learners (the rule is in ``rule``)."""
    where = _live_statements(course, since, until)
    with engine.connect() as conn:
        enrolled = list(
            conn.execute(
                select(E.c.learner).where(
                    _course_filter(E.c.course_id, course), E.c.unregistered_at.is_(None)
                )
            ).scalars()
        )
        clicks = dict(
            conn.execute(
                select(S.c.learner, func.sum(S.c.clicks)).where(*where).group_by(S.c.learner)
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
            select(func.count(), func.coalesce(func.sum(S.c.clicks), 0), func.count(distinct(S.c.day)),
                   func.min(S.c.timestamp), func.max(S.c.timestamp)).where(mine)
        ).one()  # fmt: skip
        if enrolment is None and totals[0] == 0:
            return None
        start = _start_day(conn, course)
        # the learner's rows, through the (course, learner) index, aggregated here: a
        # GROUP BY or DISTINCT tempts SQLite into scanning the whole course by another index
        weeks: dict[int, dict] = defaultdict(lambda: {"events": 0, "clicks": 0, "days": set()})
        opened, completed = set(), set()
        for day, clicks, object_id, verb in conn.execute(
            select(S.c.day, S.c.clicks, S.c.object_id, S.c.verb).where(mine)
        ):
            w = weeks[_week(day, start)]
            w["events"] += 1
            w["clicks"] += clicks
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
        submissions = {}
        for object_id, ts, score in conn.execute(
            select(S.c.object_id, S.c.timestamp, S.c.score).where(
                mine, S.c.object_id.in_([a.assessment_id for a in assessments])
            )
        ):
            submissions[object_id] = (ts, score)
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


def time_on_step(
    engine: Engine,
    course: str,
    *,
    gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES,
    limit: int | None = None,
) -> dict:
    """Median and 75th-percentile time on each step (resource), over all learners.

    Time on a step is the time from an event on it to the learner's next event, when both
    are in the same session (gap at most ``gap_minutes``); the last event of a session has
    no measurable time and is not counted.
    """
    gap = timedelta(minutes=gap_minutes)
    durations: dict[str, list[float]] = defaultdict(list)
    learners = set()
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=5000).execute(
            select(S.c.learner, S.c.timestamp, S.c.object_id)
            .where(
                _course_filter(S.c.course_id, course),
                S.c.voided.is_(False),
                S.c.object_type == "Activity",
            )
            .order_by(S.c.learner, S.c.timestamp, S.c.pk)
        )
        prev = None
        for learner, ts, obj in rows:
            learners.add(learner)
            if prev is not None and prev[0] == learner and ts - prev[1] <= gap:
                durations[prev[2]].append((ts - prev[1]).total_seconds())
            prev = (learner, ts, obj)
    steps = []
    for step, values in durations.items():
        steps.append({
            "step": step,
            "measured": len(values),
            "median_s": _percentile(values, 50),
            "p75_s": _percentile(values, 75),
        })  # fmt: skip
    steps.sort(key=lambda s: (-s["measured"], s["step"]))
    if limit:
        steps = steps[:limit]
    return {"course": course, "gap_minutes": gap_minutes, "learners": len(learners), "steps": steps}


# --------------------------------------------------------------------------- assessments


def assessment_scores(engine: Engine, course: str) -> dict:
    """Per assessment: submissions, late and missing ones, score distribution (10-point bins)."""
    with engine.connect() as conn:
        assessments = conn.execute(
            select(A.c.course_id, A.c.assessment_id, A.c.type, A.c.due_at, A.c.weight)
            .where(_course_filter(A.c.course_id, course))
            .order_by(A.c.course_id, A.c.due_at, A.c.assessment_id)
        ).all()
        subs: dict[str, list[tuple[datetime, float | None]]] = defaultdict(list)
        for object_id, ts, score in conn.execute(
            select(S.c.object_id, S.c.timestamp, S.c.score).where(
                _course_filter(S.c.course_id, course),
                S.c.voided.is_(False),
                S.c.object_id.in_(
                    select(A.c.assessment_id).where(_course_filter(A.c.course_id, course))
                ),
            )
        ):
            subs[object_id].append((ts, score))
        # enrolments: who could still submit at each due date
        enrol = conn.execute(
            select(E.c.course_id, E.c.unregistered_at).where(_course_filter(E.c.course_id, course))
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
