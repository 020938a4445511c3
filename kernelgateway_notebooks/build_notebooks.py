"""Write the shipped analytics notebooks (``python kernelgateway_notebooks/build_notebooks.py [STORE_URL]``).

The notebooks are generated so that every route has the same shape: a markdown cell that
documents it (parameters, an example response), the route cell, and its ``ResponseInfo``
cell. The logic lives in :mod:`hub_ext.services.events.queries` (unit-tested); a notebook
only parses parameters and calls it. With a store URL holding the OULAD import, the
example responses are computed from it (course ``aaa-2013j``, lists cut to two items); the
FutureLearn routes' from the slice in ``tests/data/futurelearn`` (course ``ecsa-6``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
OULAD = (
    "Examples are computed from OULAD (Kuzilek J., Hlosta M., Zdrahal Z. (2017), "
    '"Open University Learning Analytics dataset", Scientific Data 4:170171, '
    "doi:10.1038/sdata.2017.171, CC BY 4.0), course `aaa-2013j` (module AAA, presentation "
    "2013J), imported with `hub-ext import oulad`."
)
FL_COURSE = "ecsa-6"
FL_SLICE = HERE.parent / "tests" / "data" / "futurelearn"
FUTURELEARN = (
    "Examples of the FutureLearn routes are computed from the made-up run `ecsa-6` in "
    "`tests/data/futurelearn/` (FutureLearn's export formats, no real learner), imported with "
    "`hub-ext import futurelearn --start 2018-05-29`."
)
FL_STAFF = (
    "Staff (enrolment role `organisation_admin`, or named by the team-members export) are left out."
)
SETUP = """import json

from hub_ext.services.events import charts
from hub_ext.services.events import queries as q

# The analytics service sets both: the store's read-only URL and this notebook's course.
ENGINE = q.connect()  # $HUB_EXT_EVENTS_URL, opened read-only
COURSE = q.course_from_env()  # $COURSE_ID ("*" = every course in the store)

# kernel gateway sets REQUEST before each route cell; this one lets the notebook run by hand
REQUEST = json.dumps({"args": {}, "path": {}, "headers": {}, "body": ""})"""

LEARNER = 'q.param_str(r, "learner", required=True, pattern=r"[A-Za-z0-9._@+-]{1,255}")'
SINCE_UNTIL = 'since=q.param_date(r, "since"), until=q.param_date(r, "until")'
GAP = 'gap_minutes=q.param_int(r, "gap", default=q.DEFAULT_SESSION_GAP_MINUTES, minimum=1, maximum=1440)'
DAILY = (
    "q.daily_activity(ENGINE, COURSE, " + SINCE_UNTIL + ", "
    'measure=q.param_choice(r, "measure", ("learners", "events", "clicks"), "learners"))'
)
FILTERS = (
    'learner=q.param_str(r, "learner", max_length=255), group=q.param_str(r, "group", pattern=r"[^:]+:.+"), '
    + SINCE_UNTIL
)
P_SINCE = ("since", "date YYYY-MM-DD, optional", "first day included")
P_UNTIL = ("until", "date YYYY-MM-DD, optional", "last day included; not before since")
P_LEARNER = ("learner", "path", "the learner id (hub username, or the importer's id)")
P_GAP = ("gap", "integer minutes 1-1440, default 55", "the gap that ends a session")
P_FILTERS = [
    ("learner", "string, optional", "only this learner's activity"),
    (
        "group",
        "key:value, optional",
        "only learners whose enrolment has it, e.g. final_result:Fail, region:Scotland",
    ),
    P_SINCE,
    P_UNTIL,
]
CHART = (
    "Answers a Vega-Lite v5 specification (`$schema` names vega-lite; the course page draws it) "
    "with the rows of `GET {data}` inline in `data.values`, one point per row."
)


def chart(path: str, data: str, doc: str, params: list, code: str, example: tuple, **extra) -> dict:
    """A chart route: ``code`` is the spec builder's call (``charts.*``), ``example`` a
    (charts function, queries function, args, kwargs, chart kwargs) computed for the docs;
    ``extra``: the route's other keys (``example_course``)."""
    return {
        "path": path,
        "doc": f"{doc} {CHART.format(data=data)}",
        "params": params,
        "code": code,
        "example": example,
        **extra,
    }


NOTEBOOKS = {
    "course_overview": {
        "title": "Course overview: registrations, daily and weekly activity, progress funnel",
        "intro": "How many learners registered, how they did, and how activity went day by day and week by week. "
        "Weeks are counted from the course start (week 0 = its first seven days; earlier days are in negative weeks): "
        "the catalog's `opens` or the importer's `--start`, else the day of the first learner's event "
        "(`null` when there is none). **clicks** are VLE clicks only (OULAD's `sum_click`, one per step visit), "
        "**submissions** are counted apart: one per learner and assessment, the latest `completed` statement about it "
        "(a hand-in again replaces the one before), scored by the latest `scored` statement (the hub's grading) else by "
        "its own score (OULAD's); **events** counts every statement. Staff (enrolment role `organisation_admin`) are not learners and are left out of every figure.",
        "routes": [
            {
                "path": "/summary",
                "doc": "Registrations, final results and activity totals of the course's learners: `events` (every "
                "statement), `clicks` (VLE clicks only), `submissions` (assessment submissions).",
                "params": [],
                "code": "q.summary(ENGINE, COURSE)",
                "example": ("summary", (), {}),
            },
            {
                "path": "/activity/daily",
                "doc": "Activity per day: distinct learners (default), statements (`events`) or VLE clicks (`clicks`).",
                "params": [
                    ("since", "date YYYY-MM-DD, optional", "first day included"),
                    ("until", "date YYYY-MM-DD, optional", "last day included; not before since"),
                    (
                        "measure",
                        "learners | events | clicks, default learners",
                        "what to count per day",
                    ),
                ],
                "code": DAILY,
                "example": ("daily_activity", (), {}),
            },
            {
                "path": "/activity/weekly",
                "doc": "Weekly engagement: per course week, active learners, their share of the enrolled, events and VLE "
                "clicks; `start` is the course start the weeks count from.",
                "params": [],
                "code": "q.weekly_engagement(ENGINE, COURSE)",
                "example": ("weekly_engagement", (), {}),
            },
            {
                "path": "/funnel",
                "doc": "The weekly progress funnel. `reached`: learners whose last activity is in this week or later; "
                "`active`: learners active in this week; `active_every_week`: active in every week so far.",
                "params": [],
                "code": "q.funnel(ENGINE, COURSE)",
                "example": ("funnel", (), {}),
            },
            {
                "path": "/sentiment/weekly",
                "doc": "FutureLearn's weekly sentiment survey beside that week's activity: per week, the "
                "responses, the mean experience rating, the responses per rating, and `active_learners`, the "
                "learners active in that course week (as `/activity/weekly` counts them). FutureLearn's "
                "`week_number` 1 is course week 0 (`course_week`). Known biases: the survey is anonymous, so "
                "staff who answered it cannot be left out and a response cannot be tied to activity; learners "
                "answer a week's survey when they reach the end of its steps, often in a later calendar week, "
                "so responses and active learners are not the same people; only the satisfied or the "
                "annoyed tend to answer. Active learners: " + FL_STAFF,
                "params": [],
                "code": "q.sentiment_weekly(ENGINE, COURSE)",
                "example": ("sentiment_weekly", (), {}),
                "example_course": FL_COURSE,
            },
            {
                "path": "/leavers",
                "doc": "FutureLearn's leaving survey: how many answered (`responses`) beside the learners who "
                "unenrolled (`unenrolled`), the reasons (most given first), and the distribution of the last "
                "step they had completed, by week and by step in course order (`null`: none completed). "
                "Known biases: only leavers who answered the survey are counted (compare with `unenrolled`), "
                "and learners who stop without unenrolling never see it; the last completed step is not the "
                "last step visited. " + FL_STAFF,
                "params": [],
                "code": "q.leavers(ENGINE, COURSE)",
                "example": ("leavers", (), {}),
                "example_course": FL_COURSE,
            },
            chart(
                "/charts/activity/daily",
                "/activity/daily",
                "Daily activity as a line chart (the y axis says what it counts).",
                [
                    P_SINCE,
                    P_UNTIL,
                    (
                        "measure",
                        "learners | events | clicks, default learners",
                        "what to count per day",
                    ),
                ],
                f"charts.daily_activity({DAILY})",
                ("daily_activity", "daily_activity", (), {"measure": "clicks"}, {}),
            ),
            chart(
                "/charts/activity/weekly",
                "/activity/weekly",
                "Weekly engagement: distinct learners active per course week, as bars.",
                [],
                "charts.weekly_engagement(q.weekly_engagement(ENGINE, COURSE))",
                ("weekly_engagement", "weekly_engagement", (), {}, {}),
            ),
            chart(
                "/charts/funnel",
                "/funnel",
                "The progress funnel: a line each for `reached`, `active` and `active_every_week`.",
                [],
                "charts.funnel(q.funnel(ENGINE, COURSE))",
                ("funnel", "funnel", (), {}, {}),
            ),
        ],
    },
    "resource_heatmap": {
        "title": "Resources: heat-map and who has not opened a resource yet",
        "intro": "VLE clicks (OULAD's `sum_click`, one per step visit; submissions are not clicks) and distinct "
        "learners per resource, as Moodle's Activity Viewer shows them (staff left out), "
        "and the enrolled learners who have not opened a given resource.",
        "routes": [
            {
                "path": "/resources",
                "doc": "VLE clicks, statements and distinct learners per resource, most clicked first.",
                "params": [
                    ("learner", "string, optional", "only this learner's activity"),
                    (
                        "group",
                        "key:value, optional",
                        "only learners whose enrolment has it, e.g. final_result:Fail, region:Scotland",
                    ),
                    ("since", "date YYYY-MM-DD, optional", "first day included"),
                    ("until", "date YYYY-MM-DD, optional", "last day included"),
                    ("limit", "integer 1-10000, optional", "at most this many resources"),
                ],
                "code": "q.heatmap(ENGINE, COURSE, " + FILTERS + ", "
                'limit=q.param_int(r, "limit", minimum=1, maximum=10000))',
                "example": ("heatmap", (), {"limit": 2}),
            },
            {
                "path": "/resources/:resource/not-opened",
                "doc": "Enrolled learners (not unregistered) with no statement about the resource; 404 if the course has no such resource.",
                "params": [
                    (
                        "resource",
                        "path, the resource's IRI (URL-encoded)",
                        "e.g. urn:oulad:site:546652",
                    )
                ],
                "code": 'q.not_opened(ENGINE, COURSE, q.param_str(r, "resource", required=True, pattern=r"[A-Za-z][A-Za-z0-9+.-]*:\\S+"))',
                "example": ("not_opened", ("urn:oulad:site:546652",), {}),
            },
            {
                "path": "/videos",
                "doc": "Video completion per video step, in course order (FutureLearn's video-stats export): "
                "`duration_s`, `views`, downloads, caption and transcript views, and the completion curve, "
                "for each point of the video (5, 10, 25, 50, 75, 95, 100 %) the share of views that reached "
                "it (`views_percent`, as FutureLearn computes it), beside `learners_opened_step`, the learners "
                "who opened the step. Known biases: FutureLearn counts views, not viewers (a learner who "
                "watches twice counts twice), over everyone, staff included, and not the downloads watched "
                "offline; a view that skips ahead reaches the later points without watching what is between.",
                "params": [],
                "code": "q.video_completion(ENGINE, COURSE)",
                "example": ("video_completion", (), {}),
                "example_course": FL_COURSE,
            },
            chart(
                "/charts/videos",
                "/videos",
                "Video completion: a line per video step, the share of its views that reached each "
                "point of the video.",
                [],
                "charts.videos(q.video_completion(ENGINE, COURSE))",
                ("videos", "video_completion", (), {}, {}),
                example_course=FL_COURSE,
            ),
            chart(
                "/charts/heatmap",
                "/resources",
                "Moodle Activity Viewer's heat-map: the most clicked resources (rows) by course week "
                "(columns), coloured by VLE clicks or distinct learners; a cell is a resource and week "
                "with its `clicks` and `learners`.",
                [
                    ("measure", "clicks | learners, default clicks", "what the colour counts"),
                    *P_FILTERS,
                    ("limit", "integer 1-500, default 40", "at most this many resources (rows)"),
                ],
                "charts.heatmap(q.resource_weeks(ENGINE, COURSE, " + FILTERS + ", "
                'limit=q.param_int(r, "limit", default=40, minimum=1, maximum=500)), '
                'measure=q.param_choice(r, "measure", ("clicks", "learners"), "clicks"))',
                ("heatmap", "resource_weeks", (), {"limit": 2}, {"measure": "clicks"}),
            ),
        ],
    },
    "know_thy_student": {
        "title": "Know thy student: learner profile, study sessions, segments",
        "intro": "One learner's enrolment, weekly activity and completion, assessment scores and lateness, "
        "last activity (on the hub too); their study sessions; and the course's learner segments.",
        "routes": [
            {
                "path": "/learners/:learner",
                "doc": "The learner's profile; 404 if the course has no such learner. `clicks` are VLE clicks only, "
                "`submissions` the learner's assessment submissions (the latest hand-in of each; its score the latest grading's), "
                "`events` every statement.",
                "params": [
                    ("learner", "path", "the learner id (hub username, or the importer's id)")
                ],
                "code": "q.learner_profile(ENGINE, COURSE, " + LEARNER + ")",
                "example": ("learner_profile", ("28400",), {}),
            },
            {
                "path": "/learners/:learner/sessions",
                "doc": "Study sessions: the learner's events split where two are more than `gap` minutes apart; "
                "offsets are seconds since the learner's first event.",
                "params": [
                    ("learner", "path", "the learner id"),
                    ("gap", "integer minutes 1-1440, default 55", "the gap that ends a session"),
                ],
                "code": "q.sessions(ENGINE, COURSE, " + LEARNER + ", " + GAP + ")",
                "example": ("sessions", ("28400",), {}),
            },
            {
                "path": "/segments",
                "doc": "Inactive, struggling and highly engaged learners. The rule (also in the response): "
                "percentiles over the non-zero VLE click counts (edX's rule; submissions are not clicks); highly engaged "
                "at or above the 90th; struggling at or below the 25th or a mean score below 40; inactive with no "
                "activity. Staff are not learners.",
                "params": [
                    ("since", "date YYYY-MM-DD, optional", "first day counted"),
                    ("until", "date YYYY-MM-DD, optional", "last day counted"),
                ],
                "code": "q.segments(ENGINE, COURSE, " + SINCE_UNTIL + ")",
                "example": ("segments", (), {}),
            },
            chart(
                "/charts/learners/:learner",
                "/learners/:learner",
                "The learner's profile page: activity timeline (VLE clicks per week), completion by "
                "week, assessments (score; on time, late or missing); 404 if the course has no such learner.",
                [P_LEARNER],
                "charts.learner_profile(q.learner_profile(ENGINE, COURSE, " + LEARNER + "))",
                ("learner_profile", "learner_profile", ("28400",), {}, {}),
            ),
            chart(
                "/charts/learners/:learner/sessions",
                "/learners/:learner/sessions",
                "The learner's study sessions: one point per session, its start, length and events.",
                [P_LEARNER, P_GAP],
                "charts.sessions(q.sessions(ENGINE, COURSE, " + LEARNER + ", " + GAP + "))",
                ("sessions", "sessions", ("28400",), {}, {}),
            ),
            chart(
                "/charts/segments",
                "/segments",
                "Distinct learners per segment, as bars (the rule is in the chart's description).",
                [P_SINCE, P_UNTIL],
                "charts.segments(q.segments(ENGINE, COURSE, " + SINCE_UNTIL + "))",
                ("segments", "segments", (), {}, {}),
            ),
        ],
    },
    "study_time_and_assessments": {
        "title": "Time on step and assessments",
        "intro": "Median and 75th-percentile time per step from study sessions, and per assessment the score "
        "distribution with late and missing submissions.",
        "routes": [
            {
                "path": "/time-on-step",
                "doc": "Time on a step: per learner, from opening the step to opening the next one within a session "
                "(no two of the learner's events more than `gap` minutes apart), summed over the learner's visits; "
                "`measured` is the number of learners measured, and the median and 75th percentile are over them. "
                "Same-second openings are ordered by the step's position. Known biases (also in the response's "
                "`rule`): the last step opened in a session has no end and is not measured, so steps that often end a "
                "session are measured on fewer learners; time on other pages between two openings counts for the "
                "first step; FutureLearn keeps only each step's first visit, so a return visit counts for the step "
                "opened before it. Staff are left out. A course whose events are dated to the day only "
                "(OULAD: a click row is a learner's clicks on a site in one day) has no time on step: it is "
                "listed in `not_measured`, not measured as zeros.",
                "params": [
                    ("gap", "integer minutes 1-1440, default 55", "the gap that ends a session"),
                    (
                        "limit",
                        "integer 1-10000, optional",
                        "at most this many steps (most measured first)",
                    ),
                ],
                "code": 'q.time_on_step(ENGINE, COURSE, gap_minutes=q.param_int(r, "gap", default=q.DEFAULT_SESSION_GAP_MINUTES, '
                'minimum=1, maximum=1440), limit=q.param_int(r, "limit", minimum=1, maximum=10000))',
                "example": ("time_on_step", (), {"limit": 2}),
                "example_course": FL_COURSE,
            },
            {
                "path": "/assessments",
                "doc": "Per assessment: submitted (one per learner: the latest `completed` statement; a hand-in again "
                "replaces the one before), late (after the due day), missing (enrolled then, no submission), mean, "
                "median and a 10-point histogram of the scores (each the latest `scored` statement's, the hub's "
                "grading and manual grades; else the submission's own, OULAD's).",
                "params": [],
                "code": "q.assessment_scores(ENGINE, COURSE)",
                "example": ("assessment_scores", (), {}),
            },
            {
                "path": "/quiz",
                "doc": "Quiz answers per question, in course order (week, step, question): `learners` who "
                "answered, `answers` submitted, `right_first_time` (learners whose first answer was right) and "
                "its share of `learners`, `right_eventually`, and attempts per learner (`attempts_mean`, "
                "`attempts_median`). A learner's first answer is the earliest; in the same second a wrong "
                "answer comes before a right one (a learner stops once right), so the answer never depends on "
                "the order rows were stored in. Known biases (also in the response's `rule`): a learner who "
                "found the answer elsewhere, or guessed, is right first time; learners who skip a question "
                "are not counted at all; FutureLearn's quizzes allow any number of tries and its tests only a "
                "few, so attempts mean different things on the two. " + FL_STAFF,
                "params": [],
                "code": "q.quiz_answers(ENGINE, COURSE)",
                "example": ("quiz_answers", (), {}),
                "example_course": FL_COURSE,
            },
            chart(
                "/charts/quiz",
                "/quiz",
                "Quiz answers: per question in course order, the share of its learners right first "
                "time, as bars.",
                [],
                "charts.quiz(q.quiz_answers(ENGINE, COURSE))",
                ("quiz", "quiz_answers", (), {}, {}),
                example_course=FL_COURSE,
            ),
            chart(
                "/charts/time-on-step",
                "/time-on-step",
                "Time on step: the median per learner as a bar, the 75th percentile as a tick.",
                [
                    P_GAP,
                    (
                        "limit",
                        "integer 1-500, default 40",
                        "at most this many steps (most measured first)",
                    ),
                ],
                "charts.time_on_step(q.time_on_step(ENGINE, COURSE, " + GAP + ", "
                'limit=q.param_int(r, "limit", default=40, minimum=1, maximum=500)))',
                ("time_on_step", "time_on_step", (), {"limit": 2}, {}),
                example_course=FL_COURSE,
            ),
            chart(
                "/charts/assessments",
                "/assessments",
                "The score distribution (submissions per 10-point bin) beside the submissions on time, "
                "late and missing, per assessment.",
                [],
                "charts.assessments(q.assessment_scores(ENGINE, COURSE))",
                ("assessments", "assessment_scores", (), {}, {}),
            ),
        ],
    },
}


def _cut(value, n=2):
    if isinstance(value, list):
        return [_cut(v, n) for v in value[:n]] + (["..."] if len(value) > n else [])
    if isinstance(value, dict):
        return {k: _cut(v, n) for k, v in value.items()}
    return value


def futurelearn_engine():
    """The FutureLearn slice imported into a store in memory (the examples of its routes)."""
    from datetime import datetime

    from hub_ext.services.events.importers import (
        FUTURELEARN_EXPORTS,
        futurelearn_export,
        import_futurelearn,
    )
    from hub_ext.services.events.store import EventStore

    files = {FUTURELEARN_EXPORTS[futurelearn_export(p)][0]: p for p in FL_SLICE.glob("*.csv")}
    store = EventStore("sqlite://")
    import_futurelearn(store, FL_COURSE, starts_at=datetime(2018, 5, 29), **files)
    return store.engine


def example(engines: dict | None, spec, course: str = "aaa-2013j") -> str | None:
    if engines is None:
        return None
    from hub_ext.services.events import queries as q

    engine = engines[course]
    if len(spec) == 5:  # a chart: the spec builder over the query's answer
        from hub_ext.services.events import charts

        builder, name, args, kwargs, chart_kwargs = spec
        data = getattr(q, name)(engine, course, *args, **kwargs)
        result = getattr(charts, builder)(data, **chart_kwargs)
    else:
        name, args, kwargs = spec
        result = getattr(q, name)(engine, course, *args, **kwargs)
    return json.dumps(_cut(json.loads(json.dumps(result, default=q._json_default))), indent=1)


def build(name: str, spec: dict, engines: dict | None = None) -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            f"# {spec['title']}\n\n{spec['intro']}\n\n"
            "Served by jupyter-kernel-gateway in `notebook-http` mode (the analytics service publishes it "
            "per course). It reads the event store through the read-only URL in `HUB_EXT_EVENTS_URL`, "
            "for the course in `COURSE_ID`. Every route answers JSON; a bad parameter gets status 400 "
            'and `{"error": "bad_parameter", "message": "...", "parameter": "..."}` (the hub services\' one '
            "error shape); an unknown query parameter too. Numbers are digits only (no spaces or `_`), "
            "dates `YYYY-MM-DD`.\n\n"
            "| route | what |\n|---|---|\n"
            + "".join(f"| `GET {r['path']}` | {r['doc'].split('.')[0]} |\n" for r in spec["routes"])
        ),
        new_code_cell(SETUP),
    ]
    for route in spec["routes"]:
        path = route["path"]
        query = [p for p in route["params"] if p[1] != "path" and not p[1].startswith("path")]
        rows = "".join(f"| `{p}` | {kind} | {what} |\n" for p, kind, what in route["params"])
        table = (
            f"| parameter | type | meaning |\n|---|---|---|\n{rows}" if rows else "No parameters.\n"
        )
        ex = example(engines, route["example"], route.get("example_course", "aaa-2013j"))
        ex_md = f"\nExample response (200):\n\n```json\n{ex}\n```\n" if ex else ""
        cells.append(new_markdown_cell(f"## `GET {path}`\n\n{route['doc']}\n\n{table}{ex_md}"))
        allowed = (
            "("
            + ", ".join(json.dumps(p[0]) for p in query)
            + ("," if len(query) == 1 else "")
            + ")"
        )
        cells.append(
            new_code_cell(
                f"# GET {path}\n"
                f"def answer(r):  # r: the request (path and query parameters)\n"
                f"    return {route['code']}\n\n\n"
                f"STATUS, BODY = q.respond(REQUEST, answer, allowed={allowed})\n"
                "print(BODY)"
            )
        )
        cells.append(new_code_cell(f"# ResponseInfo GET {path}\nprint(q.response_info(STATUS))"))
    if engines is not None:
        fl = any("example_course" in r for r in spec["routes"])
        cells.append(new_markdown_cell(f"{OULAD}\n\n{FUTURELEARN}" if fl else OULAD))
    for i, cell in enumerate(cells):  # stable ids: a rebuild changes only what changed
        cell.id = hashlib.sha256(f"{name}/{i}".encode()).hexdigest()[:16]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def main(argv: list[str]) -> None:
    engines = None
    if argv:
        from hub_ext.services.events import queries as q

        engines = {"aaa-2013j": q.connect(argv[0]), FL_COURSE: futurelearn_engine()}
    paths = []
    for name, spec in NOTEBOOKS.items():
        paths.append(HERE / f"{name}.ipynb")
        nbformat.write(build(name, spec, engines), paths[-1])
        print(paths[-1])
    # the house style for the code cells too (ruff formats notebooks)
    subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--quiet", *map(str, paths)], check=False
    )


if __name__ == "__main__":
    main(sys.argv[1:])
