"""The importers of FutureLearn's other exports (question-response, video-stats, the three
surveys, team-members), over the slice in ``tests/data/futurelearn`` (run ``ecsa-6``, made
up in the real exports' format): every file in, the same again changes nothing, a bad line
is reported with its file and line while the rest goes in, and the command line tells the
exports apart by their names or headers."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from hub_ext.cli import main as cli_main
from hub_ext.services.events.importers import (
    FUTURELEARN_EXPORTS,
    futurelearn_export,
    import_futurelearn,
)
from hub_ext.services.events.models import (
    Base,
    Statement,
    SurveyResponse,
    TeamMember,
    VideoStats,
)
from hub_ext.services.events.store import EventStore
from hub_ext.services.events.xapi import validate_statement

FL = Path(__file__).parent / "data" / "futurelearn"
COURSE = "ecsa-6"
ANSWERED = "http://adlnet.gov/expapi/verbs/answered"

#: (export, the data line to break, its column, the bad value, what the report says)
BREAK = [
    ("question-response", 3, "correct", "maybe", "correct 'maybe' is not true or false"),
    ("question-response", 5, "quiz_question", "2.7", "quiz_question '2.7' is not week_number"),
    ("video-stats", 2, "total_views", "lots", "total_views 'lots' is not a whole number"),
    ("weekly-sentiment-survey-responses", 4, "responded_at", "last week",
     "responded_at 'last week' is not a time"),
    ("archetype-survey-responses", 2, "learner_id", "", "learner_id is empty"),
    ("leaving-survey-responses", 2, "last_completed_week_number", "one",
     "last_completed_week_number 'one' is not a whole number"),
    ("leaving-survey-responses", 3, "last_completed_step", "week 2",
     "last_completed_step 'week 2' is not week.step"),
    ("team-members", 1, "id", " ", "id is empty"),
    ("team-members", 2, "team_role", "x" * 65, "team_role is longer than 64 characters"),
]  # fmt: skip


def files(directory: Path = FL) -> dict[str, Path]:
    """The slice's files as :func:`import_futurelearn`'s keywords."""
    return {
        FUTURELEARN_EXPORTS[futurelearn_export(p)][0]: p for p in sorted(directory.glob("*.csv"))
    }


def read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def contents(store: EventStore) -> dict[str, list]:
    """Every row of every table (statements without ``stored``, which is the import's time)."""
    out = {}
    with store.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).mappings().all()
            out[table.name] = sorted(
                repr(sorted((k, v) for k, v in r.items() if k not in ("stored", "raw", "pk")))
                for r in rows
            )
    return out


def test_every_export_is_told_apart_by_its_name_and_by_its_header(tmp_path):
    assert {futurelearn_export(p) for p in FL.glob("*.csv")} == set(FUTURELEARN_EXPORTS)
    for path in FL.glob("*.csv"):
        renamed = tmp_path / "download (3).csv"
        shutil.copy(path, renamed)
        assert futurelearn_export(renamed) == futurelearn_export(path)
    other = tmp_path / "grades.csv"
    other.write_text("student,grade\nann,A\n")
    with pytest.raises(ValueError, match=r"grades.csv: not a FutureLearn export .* team-members"):
        futurelearn_export(other)


def test_the_whole_run_imports_and_importing_it_again_changes_nothing(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    first = import_futurelearn(store, COURSE, **files())
    assert first.problem_count == 0, first.problems
    answers = read(FL / "ecsa-6_question-response.csv")
    steps = read(FL / "ecsa-6_step-activity.csv")
    visits = len(steps) + sum(1 for r in steps if r["last_completed_at"])
    assert first.new["statements"] == len(answers) + visits
    assert first.new["video_stats"] == len(read(FL / "ecsa-6_video-stats.csv"))
    assert first.new["team_members"] == len(read(FL / "ecsa-6_team-members.csv"))
    surveys = ("weekly-sentiment", "archetype", "leaving")
    assert first.new["survey_responses"] == sum(
        len(read(FL / f"ecsa-6_{s}-survey-responses.csv")) for s in surveys
    )
    before = contents(store)
    again = import_futurelearn(store, COURSE, **files())
    assert again.problem_count == 0 and set(again.new.values()) == {0}
    assert contents(store) == before


def test_a_quiz_answer_is_an_answered_statement_that_validates(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    import_futurelearn(store, COURSE, question_response=FL / "ecsa-6_question-response.csv")
    with store.engine.connect() as conn:
        raws = conn.execute(select(Statement.raw).where(Statement.verb == ANSWERED)).scalars()
        statements = list(raws)
    answers = read(FL / "ecsa-6_question-response.csv")
    # a87f submitted the same cloze answer twice in one second: two statements
    assert len(statements) == len(answers) == len({s["id"] for s in statements})
    for s in statements:
        validate_statement({k: v for k, v in s.items() if k not in ("stored", "version")})
    by_key = {}
    for s in statements:
        key = (s["actor"]["account"]["name"], s["object"]["id"].rsplit(":", 1)[1], s["timestamp"])
        by_key.setdefault(key, []).append(s)
    for row in answers:
        when = row["submitted_at"].replace(" UTC", "Z").replace(" ", "T")
        got = by_key[(row["learner_id"], row["quiz_question"], when)]
        assert row["correct"] in {str(s["result"]["success"]).lower() for s in got}
        s = got[0]
        kind = s["object"]["definition"]["interactionType"]
        assert kind == {"MultipleChoice": "choice", "Cloze": "fill-in"}[row["question_type"]]
        expected = row["cloze_response"] or row["response"].replace(",", "[,]")
        assert expected in {g["result"]["response"] for g in got}
        week, step = row["week_number"], row["step_number"]
        assert s["context"]["contextActivities"]["parent"] == [
            {"id": f"urn:futurelearn:{COURSE}:step:{week}.{step}"}
        ]


def test_tables_hold_what_the_exports_say(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    import_futurelearn(store, COURSE, **files())
    with store.engine.connect() as conn:
        videos = {v.step: v for v in conn.execute(select(VideoStats)).all()}
        team = {t.learner: t for t in conn.execute(select(TeamMember)).all()}
        leaving = {
            r.response_id: r
            for r in conn.execute(select(SurveyResponse).where(SurveyResponse.survey == "leaving"))
        }
    for row in read(FL / "ecsa-6_video-stats.csv"):
        v = videos[row["step_position"]]
        assert (v.title, v.duration_s, v.views) == (
            row["title"],
            int(row["video_duration"]),
            int(row["total_views"]),
        )
        assert v.viewed_percent["50"] == float(row["viewed_fifty_percent"])
        assert v.attributes["mobile_device_percentage"] == float(row["mobile_device_percentage"])
    for row in read(FL / "ecsa-6_team-members.csv"):
        assert team[row["id"]].team_role == row["team_role"]
        assert not hasattr(team[row["id"]], "first_name")  # names are not kept
    for row in read(FL / "ecsa-6_leaving-survey-responses.csv"):
        r = leaving[row["id"]]
        assert (r.learner, r.answer, r.step) == (
            row["learner_id"],
            row["leaving_reason"],
            row["last_completed_step"] or None,
        )


@pytest.mark.parametrize("export,index,column,value,message", BREAK)
def test_a_bad_line_is_reported_with_its_file_and_line_and_the_rest_goes_in(
    export, index, column, value, message, tmp_path, capsys
):
    source = FL / f"ecsa-6_{export}.csv"
    rows = read(source)
    rows[index - 1][column] = value
    broken = tmp_path / source.name
    with open(broken, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keyword = FUTURELEARN_EXPORTS[export][0]
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    report = import_futurelearn(store, COURSE, **{keyword: broken})
    line = index + 1  # the header is line 1
    assert report.problem_count == 1
    assert report.problems[0].startswith(f"{broken}:{line}: {message}"), report.problems
    assert sum(report.new.values()) == len(rows) - 1
    status = cli_main(["import", "futurelearn", "--course", COURSE, "--quiet",
                       "--db", f"sqlite:///{tmp_path / 'cli.db'}", str(broken)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and f"{broken}:{line}: {message}" in err and "1 bad line(s)" in err


def test_a_missing_column_names_the_file_and_the_column(tmp_path):
    path = tmp_path / "ecsa-6_team-members.csv"
    path.write_text("id,first_name,last_name,team_role\nx,A,B,educator\n")
    with pytest.raises(ValueError, match=r"team-members.csv:1: missing column\(s\) user_role"):
        import_futurelearn(EventStore("sqlite://"), COURSE, team_members=path)


def test_the_command_line_takes_every_export_by_its_file_name(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    paths = [str(p) for p in sorted(FL.glob("*.csv"))]
    argv = ["import", "futurelearn", "--course", COURSE, "--quiet", "--db", db]
    assert cli_main([*argv, "--start", "2018-05-29", *paths]) == 0
    out = capsys.readouterr().out
    for table in ("statements", "video_stats", "survey_responses", "team_members"):
        assert table in out
    assert cli_main([*argv, *paths]) == 0  # again: nothing new
    assert all(line.split()[-2] == "0" for line in capsys.readouterr().out.splitlines())
    twice = [str(FL / "ecsa-6_team-members.csv")] * 2
    assert cli_main([*argv, *twice]) == 2
    assert "two team-members exports given" in capsys.readouterr().err
    assert cli_main(argv) == 2
    assert "give the run's export files" in capsys.readouterr().err
