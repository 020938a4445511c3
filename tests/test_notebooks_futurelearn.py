"""The FutureLearn figures of the shipped notebooks (quiz answers, video completion, the weekly
sentiment survey beside activity, leavers), through the real kernel gateways in their sandbox
over the course's read-only extract, each against the same figure computed here with pandas
straight from the CSV files of ``tests/data/futurelearn`` (run ``ecsa-6``, made up in the
real exports' format); and staff, whichever export names them and in whichever order the
files came, out of every figure."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from hub_ext.services.events import queries as q
from hub_ext.services.events.importers import import_futurelearn
from hub_ext.services.events.store import EventStore
from tests.events_fixtures import SandboxedGateways, postgres_url  # noqa: F401
from tests.postgres_fixtures import new_database
from tests.test_charts import assert_valid, vega_lite  # noqa: F401
from tests.test_importers_futurelearn import files

FL = Path(__file__).parent / "data" / "futurelearn"
COURSE = "ecsa-6"
START = pd.Timestamp("2018-05-29")
TIME = {"format": "%Y-%m-%d %H:%M:%S UTC"}
#: only in the team-members export (enrolled nowhere): what makes that export matter
TEAM_ONLY = "5e8d7a3c-2b41-4f0e-8c6d-91a2b3c4d5e6"


def csv(export: str) -> pd.DataFrame:
    return pd.read_csv(FL / f"ecsa-6_{export}.csv", dtype=str, keep_default_na=False)


def position(text: str) -> tuple:
    return tuple(int(p) for p in text.split("."))


class Run:
    """The run with pandas, from the CSV files only."""

    def __init__(self):
        enrol = csv("enrolments")
        team = csv("team-members")
        self.staff = set(enrol.loc[enrol.role == "organisation_admin", "learner_id"]) | set(team.id)
        self.enrol = enrol[~enrol.learner_id.isin(self.staff)]
        answers = csv("question-response")
        self.answers = answers[~answers.learner_id.isin(self.staff)].assign(
            time=lambda d: pd.to_datetime(d.submitted_at, **TIME),
            right=lambda d: d.correct == "true",
        )
        steps = csv("step-activity")
        self.steps = steps[~steps.learner_id.isin(self.staff)]

    def quiz(self) -> list[dict]:
        out = []
        for question, rows in sorted(
            self.answers.groupby("quiz_question"), key=lambda g: position(g[0])
        ):
            first = rows.sort_values(["time", "right"]).groupby("learner_id").right.first()
            attempts = rows.groupby("learner_id").size()
            out.append({
                "question": f"urn:futurelearn:{COURSE}:question:{question}",
                "number": question,
                "learners": rows.learner_id.nunique(),
                "answers": len(rows),
                "right_first_time": int(first.sum()),
                "right_first_time_share": round(first.sum() / len(first), 4),
                "right_eventually": int(rows.groupby("learner_id").right.any().sum()),
                "attempts_mean": round(attempts.mean(), 4),
                "attempts_median": float(attempts.median()),
            })  # fmt: skip
        return out

    def videos(self) -> list[dict]:
        stats = csv("video-stats")
        opened = self.steps.groupby("step").learner_id.nunique()
        reached = {"five": 5, "ten": 10, "twentyfive": 25, "fifty": 50, "seventyfive": 75,
                   "ninetyfive": 95, "onehundred": 100}  # fmt: skip
        out = []
        for _, v in sorted(stats.iterrows(), key=lambda r: position(r[1].step_position)):
            out.append({
                "step": v.step_position, "title": v.title,
                "duration_s": int(v.video_duration), "views": int(v.total_views),
                "downloads": int(v.total_downloads), "caption_views": int(v.total_caption_views),
                "transcript_views": int(v.total_transcript_views),
                "viewed_hd_percent": float(v.viewed_hd),
                "learners_opened_step": int(opened.get(v.step_position, 0)),
                "curve": [{"reached_percent": n, "views_percent": float(v[f"viewed_{w}_percent"])}
                          for w, n in reached.items()],
            })  # fmt: skip
        return out

    def active_by_course_week(self) -> dict[int, int]:
        """Learners with any event (a step opened or completed, an answer) per course week."""
        times = pd.concat([
            self.steps[["learner_id", "first_visited_at"]].rename(columns={"first_visited_at": "t"}),
            self.steps[["learner_id", "last_completed_at"]].rename(columns={"last_completed_at": "t"}),
            self.answers[["learner_id", "submitted_at"]].rename(columns={"submitted_at": "t"}),
        ])  # fmt: skip
        times = times[times.t != ""]
        day = pd.to_datetime(times.t, **TIME).dt.normalize()
        week = (day - START).dt.days // 7
        return times.assign(week=week).groupby("week").learner_id.nunique().to_dict()

    def sentiment(self) -> list[dict]:
        survey = csv("weekly-sentiment-survey-responses").astype(
            {"week_number": int, "experience_rating": int}
        )
        active = self.active_by_course_week()
        weeks = sorted(set(survey.week_number) | {w + 1 for w in active if w >= 0})
        out = []
        for week in weeks:
            rows = survey[survey.week_number == week]
            counts = rows.experience_rating.value_counts().sort_index()
            out.append({
                "week_number": week, "course_week": week - 1, "responses": len(rows),
                "mean_rating": round(rows.experience_rating.mean(), 4) if len(rows) else None,
                "ratings": [{"rating": int(r), "responses": int(n)} for r, n in counts.items()],
                "active_learners": active.get(week - 1, 0),
            })  # fmt: skip
        return out

    def leavers(self) -> dict:
        left = csv("leaving-survey-responses")
        left = left[~left.learner_id.isin(self.staff)]
        reasons = Counter(left.leaving_reason)
        weeks = Counter(int(w) if w else None for w in left.last_completed_week_number)
        steps = Counter(s or None for s in left.last_completed_step)

        def none_last(v):
            return (v is None, position(str(v)) if v is not None else ())

        return {
            "course": COURSE,
            "responses": len(left),
            "unenrolled": int((self.enrol.unenrolled_at != "").sum()),
            "reasons": [{"reason": r, "responses": reasons[r]}
                        for r in sorted(reasons, key=lambda r: (-reasons[r], r))],
            "last_completed_week": [{"week_number": w, "responses": weeks[w]}
                                    for w in sorted(weeks, key=none_last)],
            "last_completed_step": [{"step": s, "responses": steps[s]}
                                    for s in sorted(steps, key=none_last)],
        }  # fmt: skip


@pytest.fixture(scope="module")
def run() -> Run:
    return Run()


def imported(path: Path, *calls: dict) -> EventStore:
    """A store with the run imported in these calls (each a set of keywords), in order."""
    store = EventStore(f"sqlite:///{path}")
    for kwargs in calls:
        report = import_futurelearn(store, COURSE, starts_at=datetime(2018, 5, 29), **kwargs)
        assert report.problem_count == 0, report.problems
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EventStore:
    return imported(tmp_path_factory.mktemp("fl") / "events.db", files())


@pytest.fixture(scope="module")
def gateways(store, tmp_path_factory):
    """The three notebooks with FutureLearn routes, for ecsa-6, as the analytics service runs
    them (bubblewrap sandbox, the course's read-only extract)."""
    sandboxes = SandboxedGateways(store, COURSE, tmp_path_factory.mktemp("kg"))
    try:
        yield {
            name: sandboxes.start(f"{name}.ipynb")
            for name in ("course_overview", "resource_heatmap", "study_time_and_assessments")
        }
    finally:
        sandboxes.stop()


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def as_json(value):
    return json.loads(json.dumps(value, default=q._json_default))


def test_quiz_answers_per_question_match_the_csv(store, gateways, run):
    body = ok(gateways["study_time_and_assessments"].get("/quiz"))
    assert body == as_json(q.quiz_answers(store.engine, COURSE))
    assert body["questions"] == run.quiz()
    by = {x["number"]: x for x in body["questions"]}
    # course order: 2.7.1 before 2.11.1 (numbers, not text)
    assert list(by) == ["1.3.1", "1.3.2", "2.7.1", "2.11.1"]
    # d41d answered 1.3.1 right and wrong in the same second (the right row first in the
    # file): wrong first by the rule, so not right first time; staff's answers left out
    assert by["1.3.1"]["learners"] == 4 and by["1.3.1"]["right_first_time"] == 2
    # a87f sent the same answer twice in one second: two attempts
    assert by["2.11.1"]["answers"] == 3 and by["2.11.1"]["attempts_mean"] == 1.5
    assert "wrong answer comes before a right one" in body["rule"]


def test_video_completion_per_video_step_matches_the_csv(store, gateways, run):
    body = ok(gateways["resource_heatmap"].get("/videos"))
    assert body == as_json(q.video_completion(store.engine, COURSE))
    assert body["videos"] == run.videos()
    assert [v["step"] for v in body["videos"]] == ["1.2", "2.5", "2.10"]
    curve = [p["views_percent"] for p in body["videos"][0]["curve"]]
    assert curve == sorted(curve, reverse=True)


def test_weekly_sentiment_stands_beside_that_week_s_active_learners(store, gateways, run):
    body = ok(gateways["course_overview"].get("/sentiment/weekly"))
    assert body == as_json(q.sentiment_weekly(store.engine, COURSE))
    assert body["weeks"] == run.sentiment()
    weekly = ok(gateways["course_overview"].get("/activity/weekly"))["weeks"]
    active = {w["week"]: w["active_learners"] for w in weekly}
    assert all(w["active_learners"] == active.get(w["course_week"], 0) for w in body["weeks"])
    assert [w["active_learners"] for w in body["weeks"]] == [4, 2]


def test_leavers_reasons_and_last_completed_step_match_the_csv(store, gateways, run):
    body = ok(gateways["course_overview"].get("/leavers"))
    assert body == as_json(q.leavers(store.engine, COURSE))
    assert body == run.leavers()
    assert body["responses"] == 2  # the team member's answer is left out


@pytest.mark.parametrize("path", ["/quiz", "/videos", "/sentiment/weekly", "/leavers"])
def test_the_routes_refuse_an_unknown_parameter(gateways, path):
    notebook = {"/quiz": "study_time_and_assessments", "/videos": "resource_heatmap"}
    response = gateways[notebook.get(path, "course_overview")].get(path, week="1")
    assert response.status_code == 400 and response.json()["parameter"] == "week"


@pytest.mark.parametrize(
    "chart,data,notebook,points",
    [
        ("/charts/quiz", "/quiz", "study_time_and_assessments", lambda d: len(d["questions"])),
        ("/charts/videos", "/videos", "resource_heatmap", lambda d: 7 * len(d["videos"])),
    ],
)
def test_chart_routes_draw_one_point_per_row_of_their_data_route(
    gateways,
    vega_lite,  # noqa: F811
    chart,
    data,
    notebook,
    points,
):
    spec = ok(gateways[notebook].get(chart))
    assert_valid(vega_lite, spec)
    answer = ok(gateways[notebook].get(data))
    assert len(spec["data"]["values"]) == points(answer) > 0
    if chart == "/charts/quiz":
        assert spec["encoding"]["x"]["sort"] == [x["number"] for x in answer["questions"]]
        assert [v["right_first_time_share"] for v in spec["data"]["values"]] == [
            x["right_first_time_share"] for x in answer["questions"]
        ]


def figures(engine) -> dict:
    """Every figure that names or counts learners."""
    return as_json({
        "summary": q.summary(engine, COURSE),
        "weekly": q.weekly_engagement(engine, COURSE),
        "funnel": q.funnel(engine, COURSE),
        "daily": q.daily_activity(engine, COURSE),
        "segments": q.segments(engine, COURSE),
        "heatmap": q.resource_weeks(engine, COURSE),
        "time_on_step": q.time_on_step(engine, COURSE),
        "quiz": q.quiz_answers(engine, COURSE),
        "videos": q.video_completion(engine, COURSE),
        "sentiment": q.sentiment_weekly(engine, COURSE),
        "leavers": q.leavers(engine, COURSE),
        "team_only": q.heatmap(engine, COURSE, learner=TEAM_ONLY),
    })  # fmt: skip


def test_team_members_are_staff_in_every_figure_in_any_import_order(store, tmp_path, run):
    everything = files()
    team = {"team_members": everything.pop("team_members")}
    whole = figures(store.engine)
    first = figures(imported(tmp_path / "first.db", team, everything).engine)
    last = figures(imported(tmp_path / "last.db", everything, team).engine)
    assert first == whole == last
    assert whole["team_only"]["resources"] == []
    assert whole["summary"]["active_learners"] == run.steps.learner_id.nunique() == 4
    assert whole["time_on_step"]["learners"] == 4
    # without the team-members export that team member is counted: the rule is what differs
    without = figures(imported(tmp_path / "none.db", everything).engine)
    assert without["team_only"]["resources"] != []
    assert without["summary"]["active_learners"] == 5
    assert without["quiz"]["questions"][0]["learners"] == 5


def test_an_extract_made_before_these_tables_gets_them_at_its_next_update(store, tmp_path):
    """A course's extract left by an older release has no FutureLearn tables: the next
    update adds them, so the routes answer instead of failing on a missing table."""
    import sqlite3

    from hub_ext.services.analytics.extracts import CourseExtracts

    extracts = CourseExtracts(store_url=store.readonly_url, root=str(tmp_path))
    extracts.build(COURSE)
    with sqlite3.connect(extracts.path(COURSE)) as db:
        for table in ("team_members", "video_stats", "survey_responses"):
            db.execute(f"DROP TABLE {table}")
    extracts.build(COURSE)
    engine = q.connect(f"sqlite:///{extracts.path(COURSE)}")
    assert figures(engine) == figures(store.engine)
    engine.dispose()


def test_the_figures_are_the_same_on_postgresql(store, postgres_url):  # noqa: F811
    """The JSON path of an answer's success, the staff rule's UNION and the tables as
    PostgreSQL runs them: the same figures as on SQLite."""
    pg = EventStore(new_database(postgres_url, "fl_figures"))
    try:
        report = import_futurelearn(pg, COURSE, starts_at=datetime(2018, 5, 29), **files())
        assert report.problem_count == 0, report.problems
        assert figures(pg.engine) == figures(store.engine)
    finally:
        pg.dispose()
