"""Vega-Lite v5 specifications of the shipped notebooks' figures, as plain dicts.

Each builder takes what a function of :mod:`.queries` answered and returns a complete
Vega-Lite v5 specification with that answer's rows inline (``data.values``, one data point
per row the query answered, nothing aggregated away), so a page can draw it with no other
request: the hub's course page draws any answer whose ``$schema`` names vega-lite. The
analytics image holds no Altair, so the dicts are written by hand; the tests validate every
one against Vega-Lite's published JSON schema.

Axis and legend titles say what a figure counts, in the words of :mod:`.queries`:
**VLE clicks** (the click counts of ``viewed`` statements; submissions are not clicks),
**distinct learners**, **submissions**, **statements** (every event). Every specification
carries a ``description`` (what assistive technology reads for the chart) and, in
``usermeta``, the course and the query's filters.
"""

from __future__ import annotations

import functools
import json

from .queries import _json_default

__all__ = [
    "SCHEMA",
    "assessments",
    "daily_activity",
    "funnel",
    "heatmap",
    "learner_profile",
    "quiz",
    "segments",
    "sessions",
    "time_on_step",
    "videos",
    "weekly_engagement",
]

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"

#: what each measure counts, as axis and legend titles say it
MEASURES = {
    "clicks": "VLE clicks",
    "learners": "distinct learners",
    "events": "statements (every event)",
    "submissions": "submissions",
}
WEEK_AXIS = "course week (0 = the first seven days)"
SEGMENTS = ("inactive", "struggling", "engaged", "highly_engaged")
#: what a tooltip says for each field the queries answer: (Vega-Lite type, title)
FIELDS = {
    "label": ("nominal", "resource"),
    "step": ("nominal", "step"),
    "week": ("ordinal", "course week"),
    "clicks": ("quantitative", MEASURES["clicks"]),
    "learners": ("quantitative", MEASURES["learners"]),
    "events": ("quantitative", MEASURES["events"]),
    "active_learners": ("quantitative", "distinct learners active"),
    "active_days": ("quantitative", "active days"),
    "measured": ("quantitative", "distinct learners measured"),
    "median_s": ("quantitative", "median (s)"),
    "p75_s": ("quantitative", "75th percentile (s)"),
}
STATUS_COLOURS = {"on time": "#1b7837", "late": "#e08214", "missing": "#b2182b"}


def _of_a_learner(build):
    """A builder over a learner's answer: no such learner (None) stays None (the route's 404)."""

    @functools.wraps(build)
    def wrapper(answer: dict | None) -> dict | None:
        return None if answer is None else build(answer)

    return wrapper


def _values(rows) -> list[dict]:
    """The rows as JSON values (dates and datetimes as ISO text, as the routes answer)."""
    return json.loads(json.dumps(list(rows), default=_json_default))


def _spec(title: str, description: str, meta: dict, **body) -> dict:
    return {
        "$schema": SCHEMA,
        "title": title,
        "description": description,
        "usermeta": json.loads(json.dumps(meta, default=_json_default)),
        **body,
    }


def _week_axis() -> dict:
    return {"field": "week", "type": "ordinal", "title": WEEK_AXIS}


def _tooltip(*fields: str) -> list[dict]:
    return [{"field": f, "type": FIELDS[f][0], "title": FIELDS[f][1]} for f in fields]


def _status_scale(title: str) -> dict:
    return {
        "field": "status",
        "type": "nominal",
        "title": title,
        "scale": {"domain": list(STATUS_COLOURS), "range": list(STATUS_COLOURS.values())},
    }


def _label(resource: dict) -> str:
    """A resource's row label: its title, then the end of its IRI (titles may repeat)."""
    tail = resource["resource"].rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    title = resource.get("title") or resource.get("type") or ""
    return title if title.endswith(tail) else f"{title} ({tail})".strip()


# --------------------------------------------------------------------------- resources


def heatmap(answer: dict, measure: str = "clicks") -> dict:
    """Moodle Activity Viewer's heat-map from :func:`.queries.resource_weeks`: resources
    (most clicked first) by course week, coloured by VLE clicks or distinct learners."""
    if measure not in ("clicks", "learners"):
        raise ValueError(f"measure {measure!r} is not clicks or learners")
    labels = {r["resource"]: _label(r) for r in answer["resources"]}
    values = _values({**c, "label": labels[c["resource"]]} for c in answer["cells"])
    what = MEASURES[measure]
    return _spec(
        f"Resources by week: {what}",
        f"Heat-map of the {len(labels)} most clicked resources (rows) by course week "
        f"(columns); the colour is the number of {what} in that week.",
        {
            "course": answer["course"],
            "measure": measure,
            "start": answer["start"],
            "filters": answer["filters"],
        },  # fmt: skip
        data={"values": values},
        mark={"type": "rect", "tooltip": True},
        encoding={
            "x": _week_axis(),
            "y": {
                "field": "label",
                "type": "nominal",
                "title": "resource (most VLE clicks first)",
                "sort": list(labels.values()),
            },
            "color": {
                "field": measure,
                "type": "quantitative",
                "title": what,
                "scale": {"scheme": "blues"},
            },
            "tooltip": _tooltip("label", "week", "clicks", "learners"),
        },
    )


# --------------------------------------------------------------------------- activity


def daily_activity(answer: dict) -> dict:
    """Activity per day from :func:`.queries.daily_activity` (its ``measure``)."""
    what = MEASURES[answer["measure"]]
    return _spec(
        f"Daily activity: {what}",
        f"Line chart of the {what} per day.",
        {k: answer[k] for k in ("course", "measure", "since", "until")},
        data={"values": _values(answer["days"])},
        mark={"type": "line", "point": True, "tooltip": True},
        encoding={
            "x": {"field": "date", "type": "temporal", "title": "day"},
            "y": {"field": "value", "type": "quantitative", "title": f"{what} per day"},
        },
    )


def weekly_engagement(answer: dict) -> dict:
    """Active learners per course week from :func:`.queries.weekly_engagement`."""
    return _spec(
        "Weekly engagement: distinct learners active",
        f"Bar chart of the distinct learners active in each course week, of the "
        f"{answer['enrolled']} enrolled.",
        {k: answer[k] for k in ("course", "start", "enrolled")},
        data={"values": _values(answer["weeks"])},
        mark={"type": "bar", "tooltip": True},
        encoding={
            "x": _week_axis(),
            "y": {
                "field": "active_learners",
                "type": "quantitative",
                "title": "distinct learners active",
            },
            "tooltip": [
                *_tooltip("week", "active_learners"),
                {
                    "field": "active_share",
                    "type": "quantitative",
                    "format": ".1%",
                    "title": "share of the enrolled",
                },
                *_tooltip("clicks", "events"),
            ],
        },  # fmt: skip
    )


FUNNEL_SERIES = {
    "reached": "reached: last active this week or later",
    "active": "active this week",
    "active_every_week": "active every week so far",
}


def funnel(answer: dict) -> dict:
    """The weekly progress funnel from :func:`.queries.funnel`: three lines of learners."""
    names = json.dumps(FUNNEL_SERIES)
    return _spec(
        "Progress funnel: distinct learners per week",
        "Line chart, per course week, of the distinct learners who reached the week, "
        "were active in it, and were active in every week so far.",
        {"course": answer["course"], "start": answer.get("start"), "enrolled": answer["enrolled"]},
        data={"values": _values(answer["weeks"])},
        transform=[
            {"fold": list(FUNNEL_SERIES), "as": ["series", "learners"]},
            {"calculate": f"{names}[datum.series]", "as": "learners who"},
        ],
        mark={"type": "line", "point": True, "tooltip": True},
        encoding={
            "x": _week_axis(),
            "y": {"field": "learners", "type": "quantitative", "title": "distinct learners"},
            "color": {
                "field": "learners who",
                "type": "nominal",
                "title": "distinct learners who",
                "sort": list(FUNNEL_SERIES.values()),
            },
        },
    )


def segments(answer: dict) -> dict:
    """Learners per segment from :func:`.queries.segments` (the rule is in the description)."""
    counts = answer["counts"]
    values = [{"segment": s.replace("_", " "), "learners": counts[s]} for s in SEGMENTS]
    return _spec(
        "Learner segments: distinct learners in each",
        f"Bar chart of the learners in each segment. {answer['rule']}",
        {k: answer[k] for k in ("course", "since", "until", "thresholds", "rule")},
        data={"values": values},
        mark={"type": "bar", "tooltip": True},
        encoding={
            "x": {
                "field": "segment",
                "type": "nominal",
                "title": "segment (by VLE clicks)",
                "sort": [v["segment"] for v in values],
            },
            "y": {"field": "learners", "type": "quantitative", "title": "distinct learners"},
        },  # fmt: skip
    )


# --------------------------------------------------------------------------- learners


@_of_a_learner
def learner_profile(answer: dict) -> dict:
    """A learner's profile page from :func:`.queries.learner_profile`: the activity
    timeline (VLE clicks per week), completion by week, and the assessments."""
    who = answer["learner"]
    timeline = {
        "title": "Activity timeline: VLE clicks per course week",
        "data": {"values": _values(answer["weeks"])},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": _week_axis(),
            "y": {"field": "clicks", "type": "quantitative", "title": "VLE clicks"},
            "tooltip": _tooltip("week", "clicks", "events", "active_days"),
        },
    }
    completion = {
        "title": "Completion by week: the week's planned resources",
        "data": {"values": _values(answer["completion_by_week"])},
        "transform": [{"fold": ["planned", "opened", "completed"], "as": ["of them", "resources"]}],
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "week", "type": "ordinal", "title": "planned for course week"},
            "xOffset": {"field": "of them", "sort": ["planned", "opened", "completed"]},
            "y": {"field": "resources", "type": "quantitative", "title": "resources"},
            "color": {
                "field": "of them",
                "type": "nominal",
                "title": "resources",
                "sort": ["planned", "opened", "completed"],
            },
        },  # fmt: skip
    }
    scores = {
        "title": "Assessments: score, and submissions on time, late or missing",
        "data": {"values": _values(answer["assessments"])},
        "transform": [{"calculate": "datum.score === null ? 0 : datum.score", "as": "shown"}],
        "encoding": {
            "x": {
                "field": "assessment",
                "type": "nominal",
                "title": "assessment (by due date)",
                "sort": None,
                "axis": {"labelExpr": "split(datum.label, ':')[3] || datum.label"},
            },
            "y": {
                "field": "shown",
                "type": "quantitative",
                "title": "score (0-100)",
                "scale": {"domain": [0, 100]},
            },
            "color": _status_scale("submission"),
        },  # fmt: skip
        "layer": [
            {"mark": {"type": "bar", "tooltip": True}},
            {
                "transform": [{"filter": "datum.status === 'missing'"}],
                "mark": {"type": "text", "text": "missing", "dy": -8},
            },
        ],
    }
    return _spec(
        f"Learner {who}",
        f"Profile of learner {who}: VLE clicks per course week, the resources planned for each "
        "week opened and completed, and each assessment's score with its submission on time, "
        "late or missing.",
        {
            "course": answer["course"],
            "learner": who,
            "activity": answer["activity"],
            "mean_score": answer["mean_score"],
        },  # fmt: skip
        vconcat=[timeline, completion, scores],
        resolve={"scale": {"color": "independent"}},
    )


@_of_a_learner
def sessions(answer: dict) -> dict:
    """A learner's study sessions from :func:`.queries.sessions`: one point per session."""
    return _spec(
        f"Study sessions of learner {answer['learner']}",
        f"One point per study session (a gap of more than {answer['gap_minutes']} minutes "
        "ends one): when it started, how long it lasted, how many statements it holds.",
        {k: answer[k] for k in ("course", "learner", "gap_minutes", "total_time_s")},
        data={"values": _values(answer["sessions"])},
        transform=[{"calculate": "datum.duration_s / 60", "as": "minutes"}],
        mark={"type": "point", "filled": True, "tooltip": True},
        encoding={
            "x": {"field": "start", "type": "temporal", "title": "session start"},
            "y": {
                "field": "minutes",
                "type": "quantitative",
                "title": "session length (minutes, first to last event)",
            },
            "size": {"field": "events", "type": "quantitative", "title": MEASURES["events"]},
        },  # fmt: skip
    )


# --------------------------------------------------------------------------- study time, assessments


def time_on_step(answer: dict) -> dict:
    """Time on each step from :func:`.queries.time_on_step`: the median as a bar, the 75th
    percentile as a tick, over the learners measured (the rule is in the description)."""
    values = _values(
        {**s, "label": s["step"].rsplit(":", 1)[-1].rsplit("/", 1)[-1]} for s in answer["steps"]
    )
    y = {
        "field": "label",
        "type": "nominal",
        "title": "step (most learners measured first)",
        "sort": [v["label"] for v in values],
    }
    tooltip = _tooltip("step", "measured", "median_s", "p75_s")
    unmeasured = [c["course"] for c in answer.get("not_measured", ())]
    note = (
        f" Not measured (events dated to the day only): {', '.join(unmeasured)}."
        if unmeasured
        else ""
    )
    return _spec(
        "Time on step: seconds per learner",
        f"Bars: the median seconds a learner spent on each step; ticks: the 75th percentile. "
        f"{answer['rule']}{note}",
        {
            k: answer[k]
            for k in ("course", "gap_minutes", "learners", "rule", "not_measured")
            if k in answer
        },
        data={"values": values},
        encoding={"y": y, "tooltip": tooltip},
        layer=[
            {
                "mark": {"type": "bar"},
                "encoding": {
                    "x": {
                        "field": "median_s",
                        "type": "quantitative",
                        "title": "seconds on the step per learner (median; tick: 75th percentile)",
                    }
                },
            },
            {
                "mark": {"type": "tick", "color": "black"},
                "encoding": {"x": {"field": "p75_s", "type": "quantitative"}},
            },
        ],  # fmt: skip
    )


def assessments(answer: dict) -> dict:
    """Per assessment from :func:`.queries.assessment_scores`: the score distribution
    (submissions per 10-point bin) and the submissions on time, late and missing."""
    bins, status = [], []
    for a in answer["assessments"]:
        short = a["assessment"].rsplit(":", 1)[-1]
        for b in a["histogram"]:
            bins.append({"assessment": short, "bin": f"{b['from']}-{b['to']}", **b})
        on_time = a["submitted"] - a["late"]
        for kind, n in (("on time", on_time), ("late", a["late"]), ("missing", a["missing"])):
            status.append({"assessment": short, "status": kind, "submissions": n, "due": a["due"]})
    order = [a["assessment"].rsplit(":", 1)[-1] for a in answer["assessments"]]
    y = {
        "field": "assessment",
        "type": "nominal",
        "title": "assessment (by due date)",
        "sort": order,
    }
    distribution = {
        "title": "Score distribution: submissions per 10-point bin",
        "data": {"values": _values(bins)},
        "mark": {"type": "rect", "tooltip": True},
        "encoding": {
            "x": {"field": "bin", "type": "ordinal", "title": "score", "sort": None},
            "y": y,
            "color": {
                "field": "count",
                "type": "quantitative",
                "title": "submissions",
                "scale": {"scheme": "greens"},
            },
        },  # fmt: skip
    }
    submitted = {
        "title": "Submissions on time, late, missing",
        "data": {"values": _values(status)},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {
                "field": "submissions",
                "type": "quantitative",
                "title": "submissions (missing: enrolled at the due date, none submitted)",
            },
            "y": y,
            "color": _status_scale("submission"),
            "order": {"field": "status", "sort": "descending"},
        },  # fmt: skip
    }
    return _spec(
        "Assessments: score distribution, late and missing submissions",
        "Per assessment: a heat-map of the submissions in each 10-point score bin, and bars "
        "of the submissions on time, late (after the due day) and missing.",
        {"course": answer["course"]},
        hconcat=[distribution, submitted],
        resolve={"scale": {"color": "independent"}},
    )


# --------------------------------------------------------------------------- FutureLearn


def quiz(answer: dict) -> dict:
    """Quiz answers from :func:`.queries.quiz_answers`: per question (course order) the share
    of its learners right first time, as bars (the rule is in the description)."""
    values = _values(answer["questions"])
    return _spec(
        "Quiz answers: learners right first time, per question",
        f"Bar chart of the share of learners whose first answer was right, per question in "
        f"course order. {answer['rule']}",
        {k: answer[k] for k in ("course", "rule")},
        data={"values": values},
        mark={"type": "bar", "tooltip": True},
        encoding={
            "x": {"field": "number", "type": "nominal", "title": "question (week.step.question)",
                  "sort": [v["number"] for v in values]},
            "y": {"field": "right_first_time_share", "type": "quantitative",
                  "title": "share of its learners right first time", "axis": {"format": "%"}},
            "tooltip": [
                {"field": "number", "type": "nominal", "title": "question"},
                {"field": "learners", "type": "quantitative", "title": "distinct learners"},
                {"field": "right_first_time", "type": "quantitative", "title": "right first time"},
                {"field": "attempts_mean", "type": "quantitative", "title": "attempts per learner (mean)"},
            ],
        },
    )  # fmt: skip


def videos(answer: dict) -> dict:
    """Video completion from :func:`.queries.video_completion`: a line per video step, the
    share of its views that reached each point of the video."""
    values = _values(
        {"step": v["step"], "title": v["title"], "views": v["views"], **point}
        for v in answer["videos"]
        for point in v["curve"]
    )
    return _spec(
        "Video completion: how far views went, per video step",
        "Line chart, one line per video step: for each point of the video (5 to 100 %), the "
        "share of its views that reached it, as FutureLearn counts views (every viewer, "
        "staff included; a view that skips ahead reaches the later points too).",
        {"course": answer["course"]},
        data={"values": values},
        mark={"type": "line", "point": True, "tooltip": True},
        encoding={
            "x": {"field": "reached_percent", "type": "quantitative", "title": "point of the video reached (%)"},
            "y": {"field": "views_percent", "type": "quantitative", "title": "views that reached it (%)"},
            "color": {"field": "step", "type": "nominal", "title": "video step",
                      "sort": list(dict.fromkeys(v["step"] for v in values))},
        },
    )  # fmt: skip
