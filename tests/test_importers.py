"""Importers: OULAD (real data), FutureLearn and Moodle exports, the CLI.

FutureLearn and Moodle exports are not in the shared data (they hold personal data); the
files here are written by the tests in the exports' documented column layouts.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub_ext.cli import main as cli_main
from hub_ext.courses import COURSE_ID_PATTERN
from hub_ext.services.events import queries as q
from hub_ext.services.events.importers import (
    LineError,
    Progress,
    import_futurelearn,
    import_moodle_log,
    import_oulad,
    oulad_course_id,
    oulad_start,
)
from hub_ext.services.events.models import Course, Enrolment, Resource, Statement
from hub_ext.services.events.store import EventStore
from tests.events_fixtures import oulad_dir, oulad_facts, oulad_store  # noqa: F401


def lines(path: Path) -> int:
    with open(path, newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def test_oulad_import_counts_match_the_files(oulad_store, oulad_facts):  # noqa: F811
    d = oulad_dir()
    report = oulad_store.report
    assert report.new["courses"] == oulad_store.count(Course) == 22
    assert report.new["enrolments"] == oulad_store.count(Enrolment) == 32593
    assert oulad_store.count(Resource) == lines(d / "vle.csv") == 6364
    vle = next((d / "original_format").glob("studentVle*.csv"))
    assert (
        oulad_store.count(Statement)
        == lines(d / "studentAssessment.csv") + lines(vle)
        == 173912 + 13905
    )
    assert (
        oulad_store.count(Enrolment, final_result="Withdrawn")
        == oulad_facts.final_results()["Withdrawn"]
    )


def test_oulad_course_ids_are_catalog_ids():
    assert oulad_course_id("AAA", "2013J") == "aaa-2013j"
    assert re.match(COURSE_ID_PATTERN, oulad_course_id("GGG", "2014B"))
    assert oulad_start("2014B") == datetime(2014, 2, 1) and oulad_start("2013J") == datetime(
        2013, 10, 1
    )
    with pytest.raises(LineError, match="not a year and B or J"):
        oulad_start("2013X")


@pytest.fixture
def oulad_slice(tmp_path) -> Path:
    """The small OULAD tables, and the first rows of the big ones (a copy we may break)."""
    src, dst = oulad_dir(), tmp_path / "oulad"
    dst.mkdir()
    for name in ("courses", "assessments", "vle", "studentInfo", "studentRegistration"):
        shutil.copy(src / f"{name}.csv", dst / f"{name}.csv")
    with open(src / "studentAssessment.csv") as f, open(dst / "studentAssessment.csv", "w") as out:
        out.writelines(line for i, line in zip(range(801), f, strict=False))
    vle = next((src / "original_format").glob("studentVle*.csv"))
    with open(vle) as f, open(dst / "studentVle.csv", "w") as out:
        out.writelines(line for i, line in zip(range(1201), f, strict=False))
    return dst


def test_oulad_import_twice_changes_nothing(oulad_slice, tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    first = import_oulad(store, oulad_slice)
    counts = {m.__name__: store.count(m) for m in (Statement, Enrolment, Resource, Course)}
    assert counts["Statement"] == 800 + 1200 and first.problem_count == 0
    again = import_oulad(store, oulad_slice)
    assert {m.__name__: store.count(m) for m in (Statement, Enrolment, Resource, Course)} == counts
    assert sum(again.new.values()) == 0 and again.read == first.read


def test_oulad_bad_lines_are_reported_with_their_line(oulad_slice, tmp_path, capsys):
    path = oulad_slice / "studentVle.csv"
    rows = path.read_text().splitlines()
    rows[6] = rows[6].rsplit(",", 1)[0] + ",many"  # line 7: sum_click not a number
    rows[9] = "AAA,2013J,28400"  # line 10: too few fields
    path.write_text("\n".join(rows) + "\n")
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    report = import_oulad(store, oulad_slice)
    assert report.problems == [
        f"{path}:7: sum_click 'many' is not a whole number",
        f"{path}:10: expected 6 fields",
    ]
    assert store.count(Statement) == 800 + 1200 - 2  # the good lines are in
    # the command line says the same and exits 1
    status = cli_main(
        ["import", "oulad", str(oulad_slice), "--db", f"sqlite:///{tmp_path / 'cli.db'}"]
    )
    out, err = capsys.readouterr()
    assert status == 1
    assert f"{path}:7: sum_click 'many'" in err and f"{path}:10:" in err
    assert "statements" in out and "\r" not in err  # no progress bar when not a terminal


def test_missing_column_is_reported(tmp_path, oulad_slice):
    (oulad_slice / "courses.csv").write_text("code_module,code_presentation\nAAA,2013J\n")
    with pytest.raises(
        LineError, match=r"courses.csv:1: missing column\(s\) module_presentation_length"
    ):
        import_oulad(EventStore(f"sqlite:///{tmp_path / 'e.db'}"), oulad_slice)


def test_progress_bar_draws_only_when_asked():
    out = io.StringIO()
    p = Progress(enabled=True, stream=out, clock=iter(range(0, 100)).__next__)
    p.start("studentVle", 1000)
    p.update(500, 10)
    p.finish(1000, 20)
    assert (
        "50.0%" in out.getvalue() and "100.0%" in out.getvalue() and out.getvalue().endswith("\n")
    )
    quiet = io.StringIO()
    assert Progress(stream=quiet).enabled is False  # a StringIO is not a terminal


# --------------------------------------------------------------------------- FutureLearn

STEP_HEADER = "learner_id,step,week_number,step_number,first_visited_at,last_completed_at\n"


def write_futurelearn(tmp_path: Path) -> tuple[Path, Path]:
    steps = tmp_path / "ds101_step-activity.csv"
    steps.write_text(
        STEP_HEADER
        + "a1,1.1,1,1,2026-09-01 10:00:00 UTC,2026-09-01 10:05:00 UTC\n"
        + "a1,1.2,1,2,2026-09-01 10:05:00 UTC,2026-09-01 10:20:00 UTC\n"
        + "a1,1.3,1,3,2026-09-01 10:20:00 UTC,\n"
        + "a1,2.1,2,1,2026-09-01 13:00:00 UTC,2026-09-01 13:10:00 UTC\n"
        + "b2,1.1,1,1,2026-09-02 09:00:00 UTC,2026-09-02 09:02:00 UTC\n"
        + "b2,1.2,1,2,2026-09-02 09:02:00 UTC,\n"
    )
    enrol = tmp_path / "ds101_enrolments.csv"
    enrol.write_text(
        "learner_id,enrolled_at,unenrolled_at,role,fully_participated_at,purchased_statement_at,gender,country\n"
        "a1,2026-08-20 08:00:00 UTC,,learner,,,female,FR\n"
        "b2,2026-08-21 08:00:00 UTC,,learner,,,male,GB\n"
        "c3,2026-08-22 08:00:00 UTC,2026-08-25 08:00:00 UTC,learner,,,,\n"
    )
    return steps, enrol


def test_futurelearn_import_and_time_on_step(tmp_path):
    steps, enrol = write_futurelearn(tmp_path)
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    report = import_futurelearn(store, "ds101", step_activity=steps, enrolments=enrol)
    assert report.problem_count == 0
    assert store.count(Statement) == 6 + 4  # six visits, four completions
    assert store.count(Enrolment, course_id="ds101") == 3
    assert store.count(Resource, course_id="ds101") == 4
    again = import_futurelearn(store, "ds101", step_activity=steps, enrolments=enrol)
    assert again.new["statements"] == 0 and store.count(Statement) == 10

    engine = store.engine
    tos = {s["step"].rsplit(":", 1)[1]: s for s in q.time_on_step(engine, "ds101")["steps"]}
    # from opening a step to opening the next: a1 1.1 10:00 -> 1.2 10:05, b2 09:00 -> 09:02
    assert (tos["1.1"]["measured"], tos["1.1"]["median_s"]) == (2, statistics.median([300, 120]))
    # a1's 1.2: opened 10:05, 1.3 opened 10:20; b2's 1.2 ends b2's session: not measured
    assert (tos["1.2"]["measured"], tos["1.2"]["median_s"]) == (1, 900.0)
    assert "1.3" not in tos  # its visit ends a session (the next event is 2h40 later)
    assert "2.1" not in tos  # a1's last step: nothing is opened after it
    sessions = q.sessions(engine, "ds101", "a1")
    assert [s["events"] for s in sessions["sessions"]] == [5, 2]  # split at the 2h40 gap
    assert sessions["sessions"][1]["start_offset_s"] == 3 * 3600
    assert len(q.sessions(engine, "ds101", "a1", gap_minutes=240)["sessions"]) == 1
    profile = q.learner_profile(engine, "ds101", "a1")
    week1 = next(w for w in profile["completion_by_week"] if w["week"] == 1)
    assert week1 == {"week": 1, "planned": 3, "opened": 3, "completed": 2}
    assert q.not_opened(engine, "ds101", "urn:futurelearn:ds101:step:2.1")["learners"] == ["b2"]


def test_futurelearn_bad_time_is_reported(tmp_path):
    steps = tmp_path / "s.csv"
    steps.write_text(STEP_HEADER + "a1,1.1,1,1,2026-09-01 10:00:00 UTC,\na1,1.2,1,2,yesterday,\n")
    report = import_futurelearn(
        EventStore(f"sqlite:///{tmp_path / 'e.db'}"), "ds101", step_activity=steps
    )
    assert report.problems == [
        f"{steps}:3: first_visited_at 'yesterday' is not a time such as 2016-09-19 10:17:23 UTC"
    ]
    with pytest.raises(ValueError, match="not valid"):
        import_futurelearn(EventStore("sqlite://"), "DS 101", step_activity=steps)


# --------------------------------------------------------------------------- Moodle

MOODLE = """Time,User full name,Affected user,Event context,Component,Event name,Description,Origin,IP address
"22/11/26, 14:05",Ada Lovelace,-,File: Slides week 1,File,Course module viewed,The user with id '5' viewed the 'resource' activity with course module id '12'.,web,10.0.0.1
"22/11/26, 14:05",Ada Lovelace,-,File: Slides week 1,File,Course module viewed,The user with id '5' viewed the 'resource' activity with course module id '12'.,web,10.0.0.1
"22/11/26, 14:01",Bob Byte,-,Course: Data analysis,System,Course viewed,The user with id '6' viewed the course with id '2'.,web,10.0.0.2
"22/11/26, 13:59",Ada Lovelace,-,Assignment: Essay,Assignment,A submission has been submitted.,The user with id '5' has submitted the submission with id '3' for the assignment with course module id '14'.,web,10.0.0.1
"""


def test_moodle_log_import(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text(MOODLE)
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    report = import_moodle_log(store, path, "ds101", timezone="Europe/Paris")
    assert (
        report.problem_count == 0 and store.count(Statement) == 4
    )  # the two identical views are two events
    assert import_moodle_log(store, path, "ds101", timezone="Europe/Paris").new["statements"] == 0
    heat = {r["resource"]: r for r in q.heatmap(store.engine, "ds101")["resources"]}
    assert heat["urn:moodle:cm:12"]["events"] == 2 and heat["urn:moodle:cm:12"]["learners"] == 1
    day = q.daily_activity(store.engine, "ds101", measure="learners")["days"]
    assert day == [{"date": "2026-11-22", "value": 2}]
    profile = q.learner_profile(store.engine, "ds101", "moodle-5")
    assert profile["activity"]["first"] == datetime(
        2026, 11, 22, 12, 59
    )  # 13:59 in Paris is 12:59 UTC
    assert "10.0.0.1" not in str(
        store.get_statement(q_first_id(store))
    )  # the IP address is not kept


def q_first_id(store) -> str:
    from sqlalchemy import select

    with store.engine.connect() as conn:
        return conn.execute(select(Statement.id)).scalars().first()


def test_moodle_bad_line_is_reported(tmp_path, capsys):
    path = tmp_path / "logs.csv"
    path.write_text(MOODLE.replace('"22/11/26, 14:01"', '"someday"'))
    report = import_moodle_log(EventStore(f"sqlite:///{tmp_path / 'e.db'}"), path, "ds101")
    assert report.problems == [f"{path}:4: Time 'someday' is not a time such as 22/11/26, 14:05"]
    status = cli_main(["import", "moodle-log", str(path), "--course", "ds101",
                       "--db", f"sqlite:///{tmp_path / 'cli.db'}", "--progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and f"{path}:4: Time 'someday'" in err
    assert "100.0%" in err  # --progress draws the bar even without a terminal


def test_futurelearn_cli_takes_the_start_from_the_catalog_or_start(tmp_path, capsys):
    """The run's start (#12 finding 4): the catalog course's ``opens``, or ``--start``."""
    from hub_ext.courses import Catalog

    data = Path(__file__).parent / "data" / "futurelearn"
    catalog = Path(__file__).parent.parent / "hub_config" / "courses.yaml"
    course = next(iter(Catalog.load(catalog)))
    opens = Catalog.load(catalog)[course].opens_at
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    steps = str(data / "ecsa-6_step-activity.csv")
    argv = ["import", "futurelearn", "--db", db, "--course", course, "--step-activity", steps]
    assert cli_main([*argv, "--catalog", str(catalog)]) == 0
    store = EventStore(db)
    start = q.weekly_engagement(store.engine, course)["start"]
    assert start == opens.astimezone(UTC).date().isoformat()
    assert cli_main([*argv, "--start", "2018-05-29"]) == 0
    assert q.weekly_engagement(store.engine, course)["start"] == "2018-05-29"
    assert cli_main([*argv, "--start", "20180529"]) == 2
    assert "--start '20180529' is not a date" in capsys.readouterr().err
