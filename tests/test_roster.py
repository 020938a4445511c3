"""Rosters: plain CSV and Moodle participants exports, validation, the store, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub_ext.cli import main as cli
from hub_ext.courses import Catalog
from hub_ext.roster import RosterError, RosterIndex, RosterStore, load_catalog_rosters, parse_roster
from tests.conftest import write_catalog


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


@pytest.fixture
def catalog_file(tmp_path) -> Path:
    return write_catalog(
        tmp_path / "catalog",
        [
            {"id": "ds101", "title": "Data analysis", "opens": day(-1), "closes": day(30)},
            {"id": "stat200", "title": "Statistics", "opens": day(-1), "closes": day(30)},
        ],
    )


@pytest.fixture
def catalog(catalog_file) -> Catalog:
    return Catalog.load(catalog_file)


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


MOODLE = (
    "First name,Last name,Email address,Roles,Groups,Last access to course,Status\n"
    "Alice,Liddell,alice@example.edu,Student,Group A,1 day,Active\n"
    "Tina,Teach,tina@example.edu,Teacher,No groups,2 hours,Active\n"
    "Nora,Assist,nora@example.edu,Non-editing teacher,No groups,Never,Active\n"
    'Sam,Both,sam@example.edu,"Student, Teacher",No groups,Never,Active\n'
    "Sue,Spended,sue@example.edu,Student,No groups,Never,Suspended\n"
    "Gus,Guest,gus@example.edu,No roles,No groups,Never,Active\n"
)


def test_plain_csv_with_courses(tmp_path, catalog):
    path = write(
        tmp_path / "r.csv",
        "username,email,course,role\n"
        "alice,alice@example.edu,ds101,learner\n"
        ",Dan@Example.edu,stat200,learner\n"
        "\n"
        "tina,,ds101,teacher\n",
    )
    roster = parse_roster(path, catalog=catalog)
    assert roster.format == "csv"
    assert roster.courses == {"ds101", "stat200"}
    assert [(e.course, e.role, e.username, e.email, e.line) for e in roster.entries] == [
        ("ds101", "learner", "alice", "alice@example.edu", 2),
        ("stat200", "learner", None, "dan@example.edu", 3),
        ("ds101", "teacher", "tina", None, 5),
    ]
    index = RosterIndex.build(roster.entries)
    assert index.groups_for("alice") == {"course:ds101:learner"}
    assert index.groups_for("dan", ["DAN@example.edu"]) == {"course:stat200:learner"}
    assert index.groups_for("dan") == set()


def test_plain_csv_with_course_option_and_semicolons(tmp_path, catalog):
    path = write(tmp_path / "r.csv", "username;role\nalice;learner\nbob;learner\n", bom=True)
    roster = parse_roster(path, catalog=catalog, course="ds101")
    assert roster.courses == {"ds101"}
    assert roster.counts("ds101") == {"learner": 2, "teacher": 0}


def test_moodle_participants_export(tmp_path, catalog):
    path = write(tmp_path / "participants.csv", MOODLE, bom=True)
    roster = parse_roster(path, catalog=catalog, course="ds101")
    assert roster.format == "moodle"
    assert {(e.email, e.role) for e in roster.entries} == {
        ("alice@example.edu", "learner"),
        ("tina@example.edu", "teacher"),
        ("nora@example.edu", "teacher"),
        ("sam@example.edu", "teacher"),  # the highest of their roles
    }
    assert len(roster.skipped) == 2
    assert any("line 6" in s and "Suspended" in s for s in roster.skipped)
    assert any("line 7" in s and "No roles" in s for s in roster.skipped)


@pytest.mark.parametrize(
    ("text", "course", "expected"),
    [
        ("username,course,role\nalice,ds999,learner\n", None, ["line 2: unknown course 'ds999'"]),
        (
            "username,course\nalice,ds101\n",
            None,
            ["line 1: missing column(s) role (found: username, course)"],
        ),
        (
            "email,role\nalice@example.edu,learner\n",
            None,
            ["missing column(s) course (or give --course)"],
        ),
        ("name,course,role\nalice,ds101,learner\n", None, ["missing column(s) username or email"]),
        (
            "username,course,role\nalice,ds101,learner\nbob,ds101,learner\nalice,ds101,teacher\n",
            None,
            ["line 4: duplicate of line 2 (alice in ds101)"],
        ),
        (
            "username,course,role\nalice,ds101,student\n",
            None,
            ["line 2: unknown role 'student' (expected learner or teacher)"],
        ),
        ("username,role\nalice,learner\n", "nosuch", ["unknown course 'nosuch'"]),
        (
            "username,course,role\nalice,stat200,learner\n",
            "ds101",
            ["line 2: course 'stat200' but the import is for 'ds101'"],
        ),
        (
            "username,course,role\nAl Ice,ds101,learner\n",
            None,
            ["line 2: 'al ice' is not a valid username"],
        ),
        (
            "email,course,role\nnot-an-email,ds101,learner\n",
            None,
            ["line 2: 'not-an-email' is not an email address"],
        ),
        ("username,course,role\n,ds101,learner\n", None, ["line 2: no username or email"]),
        (
            "username,course,role\nalice,ds101,learner,extra\n",
            None,
            ["line 2: more values than the header's 3 columns"],
        ),
        ("", None, ["line 1: empty file"]),
        (
            MOODLE.replace("Non-editing teacher", "Wizard"),
            "ds101",
            ["line 4: unknown Moodle role 'wizard'"],
        ),
        (MOODLE, None, ["a Moodle participants export names no course: give --course"]),
    ],
)
def test_bad_rosters_are_rejected_with_line_numbers(tmp_path, catalog, text, course, expected):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(RosterError) as e:
        parse_roster(path, catalog=catalog, course=course)
    message = str(e.value)
    for part in expected:
        assert part in message
    assert all(p.startswith(str(path)) for p in e.value.problems)


def test_every_bad_row_is_reported_and_the_good_ones_are_not_kept(tmp_path, catalog):
    path = write(
        tmp_path / "r.csv",
        "username,course,role\nalice,ds101,learner\nbob,nosuch,learner\ncarol,ds101,boss\n",
    )
    with pytest.raises(RosterError) as e:
        parse_roster(path, catalog=catalog)
    assert len(e.value.problems) == 2
    assert "line 3" in e.value.problems[0] and "line 4" in e.value.problems[1]


def test_store_replaces_a_course_atomically_and_keeps_others(tmp_path, catalog):
    store = RosterStore(tmp_path / "rosters")
    a = parse_roster(
        write(
            tmp_path / "a.csv", "username,course,role\nalice,ds101,learner\ncarol,stat200,learner\n"
        ),
        catalog=catalog,
    )
    assert store.save(a) == {}
    b = parse_roster(
        write(tmp_path / "b.csv", "username,role\nbob,learner\n"), catalog=catalog, course="ds101"
    )
    previous = store.save(b)
    assert [e["username"] for e in previous["ds101"]["entries"]] == ["alice"]
    index = RosterIndex.build(store.entries())
    assert index.groups_for("alice") == set()  # dropped from ds101 by the new import
    assert index.groups_for("bob") == {"course:ds101:learner"}
    assert index.groups_for("carol") == {"course:stat200:learner"}  # other course untouched
    assert [p.name for p in store.directory.iterdir()] == ["rosters.json"]  # no temp files left


def test_catalog_roster_references(tmp_path):
    directory = tmp_path / "cat"
    directory.mkdir()
    write(directory / "ds.csv", "username,role\nalice,learner\n")
    write(directory / "bad.csv", "username,role\nbob,learner\nbob,learner\n")
    good = write_catalog(
        directory,
        [{"id": "ds101", "title": "D", "opens": day(-1), "closes": day(9), "rosters": ["ds.csv"]}],
    )
    rosters = load_catalog_rosters(Catalog.load(good))
    assert [e.username for r in rosters for e in r.entries] == ["alice"]
    bad = write_catalog(
        directory,
        [{"id": "ds101", "title": "D", "opens": day(-1), "closes": day(9), "rosters": ["bad.csv"]}],
    )
    with pytest.raises(RosterError) as e:
        load_catalog_rosters(Catalog.load(bad))
    assert "course 'ds101': rosters:" in str(e.value) and "line 3: duplicate of line 2" in str(
        e.value
    )


def test_cli_imports_and_refuses_whole(tmp_path, catalog_file, capsys):
    roster_dir = tmp_path / "store"
    good = write(tmp_path / "participants.csv", MOODLE, bom=True)
    args = ["import-roster", "--catalog", str(catalog_file), "--roster-dir", str(roster_dir)]
    assert cli([*args, str(good), "--course", "ds101"]) == 0
    out = capsys.readouterr().out
    assert "imported 4 enrolment(s)" in out and "ds101: 1 learner(s), 3 teacher(s)" in out
    assert "2 row(s) skipped" in out
    stored = (roster_dir / "rosters.json").read_bytes()

    bad = write(
        tmp_path / "bad.csv", "username,course,role\nzed,ds101,learner\nzed,ds101,learner\n"
    )
    assert cli([*args, str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 3: duplicate of line 2 (zed in ds101)" in err
    assert "nothing was imported" in err
    assert (roster_dir / "rosters.json").read_bytes() == stored  # not half-applied

    again = write(tmp_path / "again.csv", "username,role\nzed,learner\n")
    assert cli([*args, str(again), "--course", "ds101", "--dry-run"]) == 0
    assert "would import 1 enrolment(s)" in capsys.readouterr().out
    assert (roster_dir / "rosters.json").read_bytes() == stored
    assert cli([*args, str(again), "--course", "ds101"]) == 0
    assert "(replaces 4 from" in capsys.readouterr().out


def test_default_import_is_read_by_the_hub(tmp_path, catalog_file, catalog, capsys, monkeypatch):
    """``hub-ext import-roster`` without ``--roster-dir`` stores the roster where the hub's
    course authenticator, with no ``roster_dir`` configured, reads it (both run in one
    directory, as the hub and an operator's shell in the hub's directory do)."""
    from hub_ext.authenticator import CourseOAuthenticator
    from hub_ext.courses import CourseCatalog

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_EXT_ROSTER_DIR", raising=False)
    roster = write(tmp_path / "r.csv", "username,role\nzed,learner\n")
    assert (
        cli(["import-roster", "--catalog", str(catalog_file), str(roster), "--course", "ds101"])
        == 0
    )
    capsys.readouterr()
    CourseCatalog.clear_instance()
    CourseCatalog.instance().set_catalog(catalog)
    try:
        assert CourseOAuthenticator().rosters.groups_for("zed") == {"course:ds101:learner"}
    finally:
        CourseCatalog.clear_instance()
