"""The shipped analytics notebooks, as the analytics service runs them, over the OULAD import.

Each notebook runs in its bubblewrap sandbox over the read-only extract of AAA 2013J (what
a published notebook of that course gets); the institution-wide overview (``COURSE_ID`` "*",
which no course's notebook can see) runs in a bare kernel gateway over the whole store.

Every figure is checked against the dataset's published facts or against the same figure
computed here straight from the CSV files with the csv module. Course: AAA 2013J
(``aaa-2013j``), whose click rows are the head of studentVle the data directory ships.
OULAD: Kuzilek, Hlosta, Zdrahal (2017), Scientific Data 4:170171, CC BY 4.0.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from sqlalchemy import select, update

from hub_ext.services.analytics.notebook import check_notebook
from hub_ext.services.events import queries as q
from hub_ext.services.events.importers import import_futurelearn, import_oulad
from hub_ext.services.events.models import Course, Statement
from hub_ext.services.events.store import EventStore
from tests.events_fixtures import (  # noqa: F401
    NOTEBOOKS,
    OULAD,
    OuladFacts,
    SandboxedGateways,
    oulad_facts,
    oulad_store,
    start_gateway,
)
from tests.test_charts import assert_valid, vega_lite  # noqa: F401

PUBLISHED = {"Pass": 12361, "Withdrawn": 10156, "Fail": 7052, "Distinction": 3024}
COURSE = "aaa-2013j"
START = date(2013, 10, 1)  # the nominal start of a J presentation (see importers.oulad_start)
SHIPPED = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


class Aaa2013J:
    """AAA 2013J straight from the CSV files."""

    def __init__(self, facts: OuladFacts):
        self.assessments = {
            r["id_assessment"]: r
            for r in facts.rows("assessments")
            if (r["code_module"], r["code_presentation"]) == ("AAA", "2013J")
        }
        self.submissions = [
            r for r in facts.rows("studentAssessment") if r["id_assessment"] in self.assessments
        ]
        self.clicks = [
            r
            for r in facts.rows("studentVle")
            if (r["code_module"], r["code_presentation"]) == ("AAA", "2013J")
        ]
        self.info = {
            r["id_student"]: r
            for r in facts.rows("studentInfo")
            if (r["code_module"], r["code_presentation"]) == ("AAA", "2013J")
        }
        self.registration = {
            r["id_student"]: r
            for r in facts.rows("studentRegistration")
            if (r["code_module"], r["code_presentation"]) == ("AAA", "2013J")
        }

    def events(self):
        """(student, day, object, clicks) for every statement the course should have."""
        for r in self.clicks:
            yield (
                r["id_student"],
                int(r["date"]),
                f"urn:oulad:site:{r['id_site']}",
                int(r["sum_click"]),
            )
        for r in self.submissions:
            yield (
                r["id_student"],
                int(r["date_submitted"]),
                f"urn:oulad:assessment:{r['id_assessment']}",
                1,
            )


@pytest.fixture(scope="module")
def aaa(oulad_facts) -> Aaa2013J:  # noqa: F811
    return Aaa2013J(oulad_facts)


@pytest.fixture(scope="module")
def gateways(oulad_store, tmp_path_factory):  # noqa: F811
    """One gateway per shipped notebook for aaa-2013j, and the overview for every course."""
    workdir = tmp_path_factory.mktemp("kg")
    started = {}
    sandboxes = SandboxedGateways(oulad_store, COURSE, workdir)
    try:
        for name in SHIPPED:
            started[name] = sandboxes.start(name)
        started["all"] = start_gateway("course_overview.ipynb", oulad_store, "*", workdir)
        yield started
    finally:
        for gw in started.values():
            gw.stop()
        sandboxes.stop()


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def bad(response, parameter: str) -> dict:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "bad_parameter" and body["parameter"] == parameter, body
    assert parameter in body["message"], body
    return body


# --------------------------------------------------------------------------- shape


@pytest.mark.parametrize("name", SHIPPED)
def test_notebook_passes_the_publish_check_and_documents_every_route(name):
    checked = check_notebook(NOTEBOOKS / name)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert checked.routes
    for route in checked.routes:
        assert route.response_cell is not None, f"{route.path} has no ResponseInfo cell"
        assert f"## `GET {route.path}`" in markdown
    assert markdown.count("Example response") == len(checked.routes)
    assert "CC BY 4.0" in markdown  # the examples come from OULAD: its citation goes with them


@pytest.mark.parametrize("name", SHIPPED)
def test_every_route_refuses_an_unknown_parameter_with_json_400(gateways, name):
    for route in check_notebook(NOTEBOOKS / name).routes:
        path = route.path.replace(":learner", "28400").replace(":resource", "urn:oulad:site:546652")
        body = bad(gateways[name].get(path, zzz="1"), "zzz")
        assert "unknown parameter" in body["message"]


# --------------------------------------------------------------------------- overview


def test_summary_over_every_course_matches_the_published_facts(gateways, oulad_facts):  # noqa: F811
    body = ok(gateways["all"].get("/summary"))
    assert body["courses"] == 22
    assert body["registrations"] == 32593 == oulad_facts.registrations()
    assert body["final_results"] == PUBLISHED == dict(oulad_facts.final_results())


def test_summary_of_one_course_matches_the_csv(gateways, oulad_facts, aaa):  # noqa: F811
    body = ok(gateways["course_overview.ipynb"].get("/summary"))
    assert body["course"] == COURSE
    assert (
        body["registrations"] == oulad_facts.registrations("AAA", "2013J") == len(aaa.registration)
    )
    assert body["final_results"] == dict(oulad_facts.final_results("AAA", "2013J"))
    # #12 finding 1: clicks counted one per assessment submission too
    assert body["clicks"] == sum(int(r["sum_click"]) for r in aaa.clicks)
    assert body["submissions"] == len(aaa.submissions)
    assert body["events"] == len(aaa.clicks) + len(aaa.submissions)


def test_daily_activity_matches_the_csv(gateways, aaa):
    gw = gateways["course_overview.ipynb"]
    learners, clicks = defaultdict(set), Counter()
    for student, day, _obj, _n in aaa.events():
        learners[(START + timedelta(days=day)).isoformat()].add(student)
    for r in aaa.clicks:
        clicks[(START + timedelta(days=int(r["date"]))).isoformat()] += int(r["sum_click"])
    body = ok(gw.get("/activity/daily"))
    assert {d["date"]: d["value"] for d in body["days"]} == {k: len(v) for k, v in learners.items()}
    window = ok(gw.get("/activity/daily", since="2013-09-22", until="2013-09-25", measure="clicks"))
    expected = {k: v for k, v in clicks.items() if "2013-09-22" <= k <= "2013-09-25"}
    assert {d["date"]: d["value"] for d in window["days"]} == expected and len(expected) == 4


def test_daily_activity_refuses_bad_parameters(gateways):
    gw = gateways["course_overview.ipynb"]
    bad(gw.get("/activity/daily", since="2013-13-01"), "since")
    bad(gw.get("/activity/daily", since="2014-01-02", until="2014-01-01"), "since")
    bad(gw.get("/activity/daily", measure="minutes"), "measure")
    bad(gw.get("/activity/daily", since="20131001"), "since")  # fromisoformat takes it


def test_an_invalid_utf8_query_gets_400_not_500(gateways):
    """#12 finding 6: ``?since=%ff`` was a 500 (the gateway could not decode it)."""
    body = bad(gateways["course_overview.ipynb"].get("/activity/daily?since=%ff"), "since")
    assert "not UTF-8" in body["message"]


def test_weekly_engagement_and_funnel_match_the_csv(gateways, aaa):
    gw = gateways["course_overview.ipynb"]
    weeks = defaultdict(set)
    for student, day, _obj, _n in aaa.events():
        weeks[day // 7].add(student)
    weekly = ok(gw.get("/activity/weekly"))
    assert weekly["start"] == START.isoformat()
    assert {w["week"]: w["active_learners"] for w in weekly["weeks"]} == {
        k: len(v) for k, v in weeks.items()
    }
    assert weekly["enrolled"] == len(aaa.registration)
    funnel = ok(gw.get("/funnel"))
    last_week = defaultdict(lambda: -99)
    for student, day, _obj, _n in aaa.events():
        last_week[student] = max(last_week[student], day // 7)
    weeks_of = defaultdict(set)
    for week, students in weeks.items():
        for student in students:
            weeks_of[student].add(week)
    first = min(weeks)
    assert [row["week"] for row in funnel["weeks"]] == list(range(first, max(weeks) + 1))
    for row in funnel["weeks"]:
        assert row["active"] == len(weeks.get(row["week"], ()))
        assert row["reached"] == sum(1 for w in last_week.values() if w >= row["week"])
        assert row["active_every_week"] == sum(
            1 for w in weeks_of.values() if set(range(first, row["week"] + 1)) <= w
        )
        assert row["active_every_week"] <= row["active"] <= row["reached"]


# --------------------------------------------------------------------------- resources


def test_heatmap_matches_the_csv_whole_and_filtered(gateways, aaa):
    gw = gateways["resource_heatmap.ipynb"]
    clicks, learners = Counter(), defaultdict(set)
    failed = {s for s, r in aaa.info.items() if r["final_result"] == "Fail"}
    f_clicks = Counter()
    for r in aaa.clicks:
        site = f"urn:oulad:site:{r['id_site']}"
        clicks[site] += int(r["sum_click"])
        learners[site].add(r["id_student"])
        if r["id_student"] in failed:
            f_clicks[site] += int(r["sum_click"])
    body = ok(gw.get("/resources"))
    got = {
        x["resource"]: x for x in body["resources"] if x["resource"].startswith("urn:oulad:site:")
    }
    assert {k: v["clicks"] for k, v in got.items()} == dict(clicks)
    assert {k: v["learners"] for k, v in got.items()} == {k: len(v) for k, v in learners.items()}
    top = body["resources"][0]
    assert (
        top["clicks"] == max(x["clicks"] for x in body["resources"]) and top["type"] == "homepage"
    )

    filtered = ok(gw.get("/resources", group="final_result:Fail"))
    got = {
        x["resource"]: x["clicks"]
        for x in filtered["resources"]
        if x["resource"].startswith("urn:oulad:site:")
    }
    assert got == dict(f_clicks)

    one = ok(gw.get("/resources", learner="28400", limit="3"))
    mine = Counter()
    for r in aaa.clicks:
        if r["id_student"] == "28400":
            mine[f"urn:oulad:site:{r['id_site']}"] += int(r["sum_click"])
    assert len(one["resources"]) == 3
    for x in one["resources"]:
        if x["resource"] in mine:
            assert x["clicks"] == mine[x["resource"]]


def test_heatmap_refuses_bad_parameters(gateways):
    gw = gateways["resource_heatmap.ipynb"]
    bad(gw.get("/resources", limit="0"), "limit")
    bad(gw.get("/resources", limit="ten"), "limit")
    bad(gw.get("/resources", group="Fail"), "group")
    bad(gw.get("/resources", until="yesterday"), "until")


def test_not_opened_lists_exactly_the_enrolled_who_never_opened_it(gateways, aaa):
    gw = gateways["resource_heatmap.ipynb"]
    site = "546652"
    opened = {r["id_student"] for r in aaa.clicks if r["id_site"] == site}
    still = {s for s, r in aaa.registration.items() if r["date_unregistration"] == ""}
    body = ok(gw.get(f"/resources/urn:oulad:site:{site}/not-opened"))
    assert body["learners"] == sorted(still - opened)
    assert body["enrolled"] == len(still) and body["not_opened"] == len(still - opened) > 0
    assert gw.get("/resources/urn:oulad:site:1/not-opened").status_code == 404
    bad(gw.get("/resources/not-an-iri/not-opened"), "resource")


# --------------------------------------------------------------------------- learners


def test_learner_profile_matches_the_csv(gateways, aaa):
    gw = gateways["know_thy_student.ipynb"]
    student = "28400"
    body = ok(gw.get(f"/learners/{student}"))
    info = aaa.info[student]
    assert body["enrolment"]["final_result"] == info["final_result"]
    assert body["enrolment"]["attributes"]["region"] == info["region"]
    reg = int(aaa.registration[student]["date_registration"])
    assert body["enrolment"]["registered"].startswith((START + timedelta(days=reg)).isoformat())
    subs = {r["id_assessment"]: r for r in aaa.submissions if r["id_student"] == student}
    rows = {a["assessment"].rsplit(":", 1)[1]: a for a in body["assessments"]}
    assert set(rows) == set(aaa.assessments)
    for aid, row in rows.items():
        if aid not in subs:
            assert row["status"] == "missing"
            continue
        assert row["score"] == float(subs[aid]["score"])
        due = aaa.assessments[aid]["date"]
        if due:
            late = int(subs[aid]["date_submitted"]) - int(due)
            assert row["days_late"] == late
            assert row["status"] == ("late" if late > 0 else "on time")
    my_days = {day for s, day, _o, _n in aaa.events() if s == student}
    assert body["activity"]["active_days"] == len(my_days)
    assert body["activity"]["events"] == sum(1 for s, *_ in aaa.events() if s == student)
    assert body["activity"]["clicks"] == sum(
        int(r["sum_click"]) for r in aaa.clicks if r["id_student"] == student
    )
    assert body["activity"]["submissions"] == len(subs)
    assert body["activity"]["last"].startswith((START + timedelta(days=max(my_days))).isoformat())
    assert body["mean_score"] == pytest.approx(
        statistics.fmean(float(r["score"]) for r in subs.values()), abs=0.01
    )


def test_learner_routes_answer_404_and_400(gateways):
    gw = gateways["know_thy_student.ipynb"]
    assert gw.get("/learners/999999999").status_code == 404
    bad(gw.get("/learners/a b"), "learner")
    bad(gw.get("/learners/28400/sessions", gap="0"), "gap")
    bad(gw.get("/learners/28400/sessions", gap="an hour"), "gap")
    bad(gw.get("/learners/28400/sessions", gap=" 5"), "gap")  # int() takes these
    bad(gw.get("/learners/28400/sessions", gap="10_0"), "gap")
    bad(gw.get("/segments", since="2013-10-10", until="2013-10-01"), "since")


def test_sessions_split_on_the_gap(gateways, aaa):
    gw = gateways["know_thy_student.ipynb"]
    days = sorted({day for s, day, _o, _n in aaa.events() if s == "28400"})
    # OULAD has day resolution: every day is its own session with a 55-minute gap ...
    body = ok(gw.get("/learners/28400/sessions"))
    assert body["gap_minutes"] == 55 and len(body["sessions"]) == len(days)
    assert [s["start_offset_s"] for s in body["sessions"]] == [
        (d - days[0]) * 86400.0 for d in days
    ]
    # ... and consecutive days merge with a gap of a day
    merged = ok(gw.get("/learners/28400/sessions", gap="1440"))
    runs = 1 + sum(1 for a, b in zip(days, days[1:], strict=False) if b - a > 1)
    assert len(merged["sessions"]) == runs


def test_segments_follow_the_stated_rule(gateways, aaa):
    body = ok(gateways["know_thy_student.ipynb"].get("/segments"))
    still = {s for s, r in aaa.registration.items() if r["date_unregistration"] == ""}
    clicks = Counter()
    for r in aaa.clicks:
        clicks[r["id_student"]] += int(r["sum_click"])
    assert sum(body["counts"].values()) == len(still)
    assert set(body["segments"]["inactive"]) == {s for s in still if clicks[s] == 0}
    nonzero = sorted(clicks[s] for s in still if clicks[s])
    p90 = statistics.quantiles(nonzero, n=10, method="inclusive")[-1]
    assert body["thresholds"]["p90_clicks"] == pytest.approx(p90)
    assert set(body["segments"]["highly_engaged"]) == {
        s for s in still if clicks[s] and clicks[s] >= p90
    }
    assert "90th percentile" in body["rule"]


def test_segments_over_a_month_count_clicks_not_submissions(gateways, aaa):
    """#12 finding 1: a submission counted as a click moved learners between segments."""
    body = ok(
        gateways["know_thy_student.ipynb"].get("/segments", since="2013-10-01", until="2013-10-31")
    )
    still = {s for s, r in aaa.registration.items() if r["date_unregistration"] == ""}
    clicks, scores = Counter(), defaultdict(list)
    for r in aaa.clicks:
        if 0 <= int(r["date"]) <= 30:
            clicks[r["id_student"]] += int(r["sum_click"])
    for r in aaa.submissions:
        if 0 <= int(r["date_submitted"]) <= 30 and r["score"]:
            scores[r["id_student"]].append(float(r["score"]))
    nonzero = sorted(clicks[s] for s in still if clicks[s])
    p25, *_ = statistics.quantiles(nonzero, n=4, method="inclusive")
    p90 = statistics.quantiles(nonzero, n=10, method="inclusive")[-1]
    expected = Counter()
    for s in still:
        if not clicks[s]:
            expected["inactive"] += 1
        elif clicks[s] >= p90:
            expected["highly_engaged"] += 1
        elif clicks[s] <= p25 or (scores[s] and statistics.fmean(scores[s]) < 40):
            expected["struggling"] += 1
        else:
            expected["engaged"] += 1
    assert body["counts"] == {k: expected[k] for k in body["counts"]}
    assert "VLE clicks" in body["rule"] and "submissions are not clicks" in body["rule"]


# --------------------------------------------------------------------------- study time, assessments


def test_assessment_scores_match_the_csv(gateways, aaa):
    body = ok(gateways["study_time_and_assessments.ipynb"].get("/assessments"))
    rows = {a["assessment"].rsplit(":", 1)[1]: a for a in body["assessments"]}
    assert set(rows) == set(aaa.assessments)
    for aid, a in aaa.assessments.items():
        subs = [r for r in aaa.submissions if r["id_assessment"] == aid]
        scores = [float(r["score"]) for r in subs if r["score"]]
        assert rows[aid]["submitted"] == len(subs)
        if a["date"]:
            assert rows[aid]["late"] == sum(
                1 for r in subs if int(r["date_submitted"]) > int(a["date"])
            )
        assert sum(b["count"] for b in rows[aid]["histogram"]) == len(scores)
        if scores:
            assert rows[aid]["mean"] == pytest.approx(statistics.fmean(scores), abs=0.01)
    assert any(r["late"] for r in rows.values()) and any(r["missing"] for r in rows.values())


def test_time_on_step_validates_and_says_an_oulad_course_is_not_measured(gateways):
    """OULAD dates a click row to its day: the route answered a median of 0 s for every
    site (all of a day's rows are at midnight); it says the course is not measured."""
    gw = gateways["study_time_and_assessments.ipynb"]
    body = ok(gw.get("/time-on-step", limit="5"))
    assert body["gap_minutes"] == 55 and body["steps"] == [] and body["learners"] == 0
    assert body["not_measured"] == [
        {"course": COURSE, "reason": "its events are dated to the day only"}
    ]
    bad(gw.get("/time-on-step", gap="-5"), "gap")
    bad(gw.get("/time-on-step", limit="many"), "limit")


def test_example_responses_in_the_notebooks_are_real(gateways):
    """The documented example of /summary is what the route answers (lists aside)."""
    nb = nbformat.read(NOTEBOOKS / "course_overview.ipynb", as_version=4)
    doc = next(
        c.source for c in nb.cells if c.cell_type == "markdown" and "## `GET /summary`" in c.source
    )
    example = json.loads(doc.split("```json", 1)[1].split("```", 1)[0])
    live = ok(gateways["course_overview.ipynb"].get("/summary"))
    assert {k: live[k] for k in ("registrations", "final_results", "clicks")} == {
        k: example[k] for k in ("registrations", "final_results", "clicks")
    }


# --------------------------------------------------------------------------- FutureLearn

FL = Path(__file__).parent / "data" / "futurelearn"
FL_COURSE = "ecsa-6"
FL_START = datetime(2018, 5, 29)
GAP = pd.Timedelta(minutes=55)


def fl_store(tmp_path, name="fl", *, reverse=False, starts_at=FL_START) -> EventStore:
    """The slice imported as the CLI would (``reverse``: its step rows in the other order)."""
    steps = FL / "ecsa-6_step-activity.csv"
    if reverse:
        header, *rows = steps.read_text().splitlines(keepends=True)
        steps = tmp_path / f"{name}_step-activity.csv"
        steps.write_text(header + "".join(reversed(rows)))
    store = EventStore(f"sqlite:///{tmp_path / name}.db")
    report = import_futurelearn(
        store,
        FL_COURSE,
        step_activity=steps,
        enrolments=FL / "ecsa-6_enrolments.csv",
        starts_at=starts_at,
    )
    assert report.problem_count == 0
    return store


class FlRun:
    """The slice with pandas, straight from the CSV files."""

    def __init__(self):
        time = {"format": "%Y-%m-%d %H:%M:%S UTC"}
        self.enrol = pd.read_csv(FL / "ecsa-6_enrolments.csv", dtype=str)
        steps = pd.read_csv(FL / "ecsa-6_step-activity.csv", dtype={"step": str})
        self.staff = set(self.enrol.loc[self.enrol.role == "organisation_admin", "learner_id"])
        self.learners = self.enrol[~self.enrol.learner_id.isin(self.staff)]
        self.steps = steps[~steps.learner_id.isin(self.staff)].copy()
        opened = self.steps.assign(time=pd.to_datetime(self.steps.first_visited_at, **time), kind=0)
        done = self.steps.dropna(subset=["last_completed_at"])
        done = done.assign(time=pd.to_datetime(done.last_completed_at, **time), kind=1)
        self.events = pd.concat([opened, done])[
            ["learner_id", "step", "week_number", "step_number", "time", "kind"]
        ]

    def time_on_step(self) -> dict[str, tuple[int, float, float]]:
        """step -> (learners measured, median s, p75 s): opening a step to opening the next,
        per learner and session (gap 55 min between any two events), summed per learner."""
        ev = self.events.sort_values(["learner_id", "time", "week_number", "step_number", "kind"])
        ev["session"] = ev.groupby("learner_id").time.diff().gt(GAP).cumsum()
        opens = ev[ev.kind == 0].copy()
        nxt = opens.groupby(["learner_id", "session"]).time.shift(-1)
        opens["seconds"] = (nxt - opens.time).dt.total_seconds()
        per = opens.dropna(subset=["seconds"]).groupby(["step", "learner_id"]).seconds.sum()
        by_step = per.groupby("step")
        return {step: (len(v), v.quantile(0.5), v.quantile(0.75)) for step, v in by_step}


def step_of(iri: str) -> str:
    return iri.rsplit(":", 1)[1]


def test_time_on_step_runs_from_opening_a_step_to_opening_the_next(tmp_path):
    """#12 finding 2: the time after completing a step was credited to it, and `measured`
    counted events."""
    run = FlRun()
    body = q.time_on_step(fl_store(tmp_path).engine, FL_COURSE)
    got = {step_of(s["step"]): (s["measured"], s["median_s"], s["p75_s"]) for s in body["steps"]}
    assert got == {k: (n, float(m), float(p)) for k, (n, m, p) in run.time_on_step().items()}
    # a87f reads 2.4 from 09:10:00 until opening 2.5 at 09:17:20; b2d7 leaves after 2.4
    assert got["2.4"][0] == 2 and "measured counts learners" in body["rule"].replace("'", "")
    assert body["learners"] == run.steps.learner_id.nunique()
    assert "last step opened in a session has no end" in body["rule"]


def test_time_on_step_leaves_out_the_courses_dated_to_the_day_only(tmp_path, oulad_facts):  # noqa: F811
    """Every OULAD click row is a learner's clicks on a site in one day (the CSV's ``date``
    is a day number, nothing finer): opening one site to opening the next is 0 s whatever
    the learner did, so the figure would be zeros that read as measured. With an OULAD
    course and a FutureLearn run in one store, the run's figures are those it has alone,
    and the OULAD course is named as not measured; an OULAD import made before the rule
    gets it when imported again."""
    assert all(r["date"].lstrip("-").isdigit() for r in oulad_facts.rows("studentVle"))
    store = fl_store(tmp_path, "both")
    alone = q.time_on_step(store.engine, FL_COURSE)
    head = tmp_path / "head.csv"
    rows = (OULAD / "original_format" / "studentVle_head13905.csv").read_text().splitlines()
    head.write_text("\n".join(rows[:200]) + "\n")
    import_oulad(store, OULAD, student_vle=head)
    with store.engine.connect() as conn:
        stamps = conn.execute(
            select(Statement.timestamp).where(
                Statement.course_id == COURSE, Statement.verb == q.VIEWED
            )
        ).scalars()
        assert {(t.hour, t.minute, t.second) for t in stamps} == {(0, 0, 0)}
    both = q.time_on_step(store.engine, "*")
    assert both["steps"] == alone["steps"] and both["learners"] == alone["learners"]
    assert [c["course"] for c in both["not_measured"]] == oulad_courses(store)
    assert COURSE in [c["course"] for c in both["not_measured"]]
    assert alone["not_measured"] == []
    # an import made before: its courses lack the attribute until imported again
    with store.engine.begin() as conn:
        conn.execute(update(Course).values(attributes={}).where(Course.source == "oulad"))
    assert q.time_on_step(store.engine, COURSE)["not_measured"] == []
    import_oulad(store, OULAD, student_vle=head)
    assert [c["course"] for c in q.time_on_step(store.engine, COURSE)["not_measured"]] == [COURSE]


def oulad_courses(store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(Course.id).where(Course.source == "oulad")).scalars())


def test_same_second_events_give_the_same_answer_in_any_insertion_order(tmp_path):
    """#12 finding 3: ties were broken by the order rows were stored in."""
    one = q.time_on_step(fl_store(tmp_path, "a").engine, FL_COURSE)
    other = q.time_on_step(fl_store(tmp_path, "b", reverse=True).engine, FL_COURSE)
    assert one == other
    steps = {step_of(s["step"]): s for s in one["steps"]}
    # d41d opens 2.10 and 2.9 in the same second: by position 2.9 comes first (0 s), and
    # 2.10 ends the session (so does a87f's 2.10): never measured, in either order
    assert (steps["2.9"]["measured"], steps["2.9"]["median_s"]) == (1, 0.0)
    assert "2.10" not in steps


def test_staff_are_not_learners_and_the_start_is_the_course_s(tmp_path):
    """#12 finding 4: a team member's preview set the start and staff counted as learners."""
    run = FlRun()
    engine = fl_store(tmp_path).engine
    weekly = q.weekly_engagement(engine, FL_COURSE)
    assert weekly["start"] == "2018-05-29"
    weeks = (run.events.time.dt.normalize() - pd.Timestamp(FL_START)).dt.days // 7
    active = run.events.assign(week=weeks).groupby("week").learner_id.nunique()
    assert {w["week"]: w["active_learners"] for w in weekly["weeks"]} == active.to_dict()
    assert weekly["enrolled"] == len(run.learners) and min(active.index) == 0
    summary = q.summary(engine, FL_COURSE)
    assert summary["registrations"] == len(run.learners)
    assert summary["active_learners"] == run.steps.learner_id.nunique()
    assert summary["first_event"] == run.events.time.min().to_pydatetime()
    segments = q.segments(engine, FL_COURSE)
    assert sum(segments["counts"].values()) == run.learners.unenrolled_at.isna().sum()
    assert not run.staff & {x for v in segments["segments"].values() for x in v}
    staff = next(iter(run.staff))
    heat = q.heatmap(engine, FL_COURSE, learner=staff)
    assert heat["resources"] == []
    assert (
        staff not in q.not_opened(engine, FL_COURSE, "urn:futurelearn:ecsa-6:step:2.10")["learners"]
    )
    # without a start given, weeks count from the first learner's day, not the preview
    no_start = q.weekly_engagement(fl_store(tmp_path, "n", starts_at=None).engine, FL_COURSE)
    assert no_start["start"] == run.events.time.min().date().isoformat()


def test_the_start_given_in_a_later_import_is_kept_and_an_empty_run_has_none(tmp_path):
    """#12 finding 6: an enrolment-only run said 1970-01-01; two imports left no start."""
    store = EventStore(f"sqlite:///{tmp_path / 'two.db'}")
    import_futurelearn(store, FL_COURSE, enrolments=FL / "ecsa-6_enrolments.csv")
    empty = q.weekly_engagement(store.engine, FL_COURSE)
    assert empty["start"] is None and empty["weeks"] == [] and empty["enrolled"] == 5
    import_futurelearn(
        store, FL_COURSE, step_activity=FL / "ecsa-6_step-activity.csv", starts_at=FL_START
    )
    assert q.weekly_engagement(store.engine, FL_COURSE)["start"] == "2018-05-29"
    assert q.funnel(store.engine, FL_COURSE)["start"] == "2018-05-29"


@pytest.mark.parametrize(
    "value,kind", [(" 5", "int"), ("10_0", "int"), ("٥", "int"), ("+5", "int"),
                   ("20131001", "date"), ("2013-10-1", "date"), ("2013-W40", "date")]
)  # fmt: skip
def test_parameters_are_parsed_strictly(value, kind):
    """#12 finding 6: Python's int() and date.fromisoformat accept all of these."""
    request = {"args": {"x": [value]}}
    with pytest.raises(q.BadParameter) as e:
        q.param_int(request, "x") if kind == "int" else q.param_date(request, "x")
    assert e.value.as_json()["error"] == "bad_parameter" and value in e.value.as_json()["message"]


# --------------------------------------------------------------------------- charts

#: chart route -> (its data route, the notebook, how many points the data route answered)
CHARTS = {
    "/charts/activity/daily?measure=clicks": (
        "/activity/daily?measure=clicks", "course_overview.ipynb", lambda d: len(d["days"])),
    "/charts/activity/weekly": ("/activity/weekly", "course_overview.ipynb", lambda d: len(d["weeks"])),
    "/charts/funnel": ("/funnel", "course_overview.ipynb", lambda d: len(d["weeks"])),
    "/charts/segments": ("/segments", "know_thy_student.ipynb", lambda d: len(d["counts"])),
    "/charts/learners/28400/sessions?gap=1440": (
        "/learners/28400/sessions?gap=1440", "know_thy_student.ipynb", lambda d: len(d["sessions"])),
    "/charts/learners/28400": ("/learners/28400", "know_thy_student.ipynb",
                               lambda d: [len(d["weeks"]), len(d["completion_by_week"]), len(d["assessments"])]),
    "/charts/time-on-step?limit=5": ("/time-on-step?limit=5", "study_time_and_assessments.ipynb",
                                     lambda d: len(d["steps"])),
    "/charts/assessments": ("/assessments", "study_time_and_assessments.ipynb",
                            lambda d: [10 * len(d["assessments"]), 3 * len(d["assessments"])]),
}  # fmt: skip


def points(spec: dict):
    views = spec.get("vconcat") or spec.get("hconcat")
    if views:
        return [len(v["data"]["values"]) for v in views]
    return len(spec["data"]["values"])


def get(gw, path_and_query: str):
    path, _, query = path_and_query.partition("?")
    return gw.get(path, **dict(p.split("=", 1) for p in query.split("&") if p))


@pytest.mark.parametrize("route", sorted(CHARTS))
def test_chart_routes_answer_vega_lite_with_the_data_route_s_points(gateways, vega_lite, route):  # noqa: F811
    data_route, notebook, count = CHARTS[route]
    gw = gateways[notebook]
    spec = ok(get(gw, route))
    assert_valid(vega_lite, spec)
    assert points(spec) == count(ok(get(gw, data_route))), route


def test_heatmap_chart_route_colours_filters_and_checks(gateways, vega_lite, oulad_store):  # noqa: F811
    gw = gateways["resource_heatmap.ipynb"]
    spec = ok(gw.get("/charts/heatmap"))
    assert_valid(vega_lite, spec)
    assert (
        spec["encoding"]["color"]["field"] == "clicks" and len(spec["encoding"]["y"]["sort"]) == 40
    )
    cells = q.resource_weeks(oulad_store.engine, COURSE, limit=40)["cells"]
    assert [{k: v[k] for k in cells[0]} for v in spec["data"]["values"]] == cells
    learners = ok(
        gw.get("/charts/heatmap", measure="learners", group="final_result:Fail", limit="5")
    )
    assert_valid(vega_lite, learners)
    assert learners["encoding"]["color"] == {**learners["encoding"]["color"], "field": "learners",
                                             "title": "distinct learners"}  # fmt: skip
    assert learners["usermeta"]["filters"]["group"] == "final_result:Fail"
    one = ok(gw.get("/charts/heatmap", learner="28400"))
    assert {v["learners"] for v in one["data"]["values"]} == {1}
    bad(gw.get("/charts/heatmap", measure="events"), "measure")
    bad(gw.get("/charts/heatmap", limit="501"), "limit")
    bad(gw.get("/charts/heatmap", group="Fail"), "group")
    bad(gw.get("/charts/heatmap", since="2013-10-10", until="2013-10-01"), "since")
    bad(gw.get("/charts/heatmap", zzz="1"), "zzz")


def test_chart_routes_refuse_what_their_data_routes_refuse(gateways):
    know = gateways["know_thy_student.ipynb"]
    assert know.get("/charts/learners/999999999").status_code == 404
    assert know.get("/charts/learners/999999999").json()["error"] == "not_found"
    bad(know.get("/charts/learners/a b"), "learner")
    bad(know.get("/charts/learners/28400/sessions", gap="0"), "gap")
    bad(know.get("/charts/segments", since="20131001"), "since")
    bad(
        gateways["course_overview.ipynb"].get("/charts/activity/daily", measure="minutes"),
        "measure",
    )
    bad(gateways["study_time_and_assessments.ipynb"].get("/charts/time-on-step", gap=" 5"), "gap")
